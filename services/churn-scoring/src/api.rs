//! The gRPC query API `churnguard.scoring.v1.ChurnScoring`, served by the runtime's gRPC
//! server (health, reflection, graceful stop). [`ApiServer::bind`] binds,
//! [`ApiServer::run_until`] serves until shutdown, [`ApiServer::spawn`] runs it on a
//! background task; [`crate::App`] mounts it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, TimeDelta};
use churnguard_domain::customer::{Day, day_of};
use churnguard_domain::models::FittedModel;
use churnguard_domain::models::holdout::HoldoutCheck;
use churnguard_domain::partition_for_key;
use churnguard_domain::policy::{ChurnState, PolicyBook, Rule};
use churnguard_domain::risk::{self, ScoringModel, ValueHorizon};
use churnguard_domain::{FieldViolation, Violations, quoted};
use churnguard_proto::scoring::v1 as pb;
use churnguard_proto::scoring::v1::churn_scoring_server::{ChurnScoring, ChurnScoringServer};
use churnguard_runtime::GrpcServer;
use churnguard_runtime::identity::Caller;
use tonic::{Request, Response, Status};

use crate::error::ScoringError;
use crate::holdout::PurchaseHistory;
use crate::query::{AtRisk, DayStats, HomeStore, sort_at_risk};
use crate::store::{CustomerStore, customer_key};

/// The fully-qualified gRPC service name, as health checks report it.
pub const SERVICE_NAME: &str = "churnguard.scoring.v1.ChurnScoring";

/// Page size when the caller asks for none, and the most one page may hold.
const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: u32 = 1_000;

/// What the queries read and how they compute: the store, the chain's policies, the
/// purchases topic's partition count (to find a customer's partition) and the value
/// horizon, the same as the timers use.
#[derive(Debug, Clone)]
pub struct QueryState {
    store: CustomerStore,
    policies: PolicyBook,
    partitions: u32,
    horizon: ValueHorizon,
    /// Whether the deployment refits (so a refit may be asked for).
    refits: bool,
    /// Where CheckHoldout reads every purchase day (the purchases log), if anywhere.
    history: Option<Arc<dyn PurchaseHistory>>,
    /// Held by the holdout check running, so checks run one at a time: each reads the
    /// whole log.
    one_check: Arc<tokio::sync::Mutex<()>>,
}

/// A customer's risk as the API computed it, with what it was computed from.
#[derive(Debug, Clone)]
pub struct CustomerRisk {
    pub customer: String,
    pub as_of: Day,
    pub recorded: ChurnState,
    pub risk: risk::Risk,
    pub model_version: u64,
}

impl QueryState {
    pub fn new(store: CustomerStore, policies: PolicyBook, partitions: u32) -> Self {
        Self {
            store,
            policies,
            partitions: partitions.max(1),
            horizon: ValueHorizon::default(),
            refits: true,
            history: None,
            one_check: Arc::default(),
        }
    }

    /// Where CheckHoldout reads the purchases (without it, CheckHoldout is
    /// FAILED_PRECONDITION).
    pub fn with_history(mut self, history: Arc<dyn PurchaseHistory>) -> Self {
        self.history = Some(history);
        self
    }

    /// The holdout check with the calibration period ending on `calibration_end` and the
    /// holdout on `holdout_end` (default: the last purchase day in the log): reads the
    /// whole log, then fits and predicts on a blocking thread, off the async runtime.
    pub async fn check_holdout(
        &self,
        calibration_end: Day,
        holdout_end: Option<Day>,
    ) -> Result<HoldoutCheck, ScoringError> {
        let history = self.history.as_ref().ok_or(ScoringError::NoPurchaseLog)?;
        let _one = self.one_check.lock().await;
        let read = history.purchase_days().await?;
        tokio::task::spawn_blocking(move || read.days.check(calibration_end, holdout_end))
            .await
            .map_err(|e| ScoringError::Fit(format!("the holdout check's thread failed: {e}")))?
            .map_err(ScoringError::CheckHoldout)
    }

    pub fn with_value_horizon(mut self, horizon: ValueHorizon) -> Self {
        self.horizon = horizon;
        self
    }

    /// Whether the deployment refits its models (default: yes).
    pub fn with_refits(mut self, on: bool) -> Self {
        self.refits = on;
        self
    }

    /// Asks the refitting instance for a refit as soon as the log is applied; returns the
    /// current model's version (0: none yet).
    pub async fn request_refit(&self) -> Result<u64, ScoringError> {
        if !self.refits {
            return Err(ScoringError::RefitsOff);
        }
        let current = self.store.current_model().await?.map_or(0, |m| m.version);
        self.store.request_refit().await?;
        Ok(current)
    }

    async fn model(&self) -> Result<FittedModel, ScoringError> {
        self.store
            .current_model()
            .await?
            .ok_or(ScoringError::NoModel)
    }

    /// A customer's risk on `as_of` (default: their partition's stream time).
    pub async fn customer_risk(
        &self,
        customer: &str,
        as_of: Option<Day>,
    ) -> Result<CustomerRisk, ScoringError> {
        if customer.is_empty() {
            return Err(ScoringError::invalid("customer_id", "is required"));
        }
        let partition = partition_for_key(customer.as_bytes(), self.partitions);
        let read = self
            .store
            .for_assessment(&customer_key(partition, customer))
            .await?
            .ok_or_else(|| ScoringError::UnknownCustomer(customer.to_owned()))?;
        let as_of = match as_of {
            Some(day) => day,
            None => self
                .store
                .watermark(partition)
                .await?
                .unwrap_or(read.state.last_day)
                .max(read.state.last_day),
        };
        if as_of < read.state.first_day {
            return Err(ScoringError::invalid(
                "as_of",
                format!(
                    "is before the customer's first purchase ({})",
                    date(read.state.first_day)
                ),
            ));
        }
        let fitted = self.model().await?;
        let risk = risk::assess(
            read.churn,
            &read.state,
            &self.policies,
            &ScoringModel::from(&fitted),
            &self.horizon,
            as_of,
        );
        Ok(CustomerRisk {
            customer: customer.to_owned(),
            as_of,
            recorded: read.churn,
            risk,
            model_version: fitted.version,
        })
    }

    /// A page of `store`'s at-risk customers after `cursor`, merged over partitions;
    /// with the cursor of the next page when there may be more.
    pub async fn at_risk(
        &self,
        store: &str,
        limit: usize,
        cursor: Option<&AtRisk>,
    ) -> Result<(Vec<AtRisk>, Option<AtRisk>), ScoringError> {
        let mut all = Vec::new();
        for p in 0..self.partitions {
            // One more than a page: it tells whether a next page exists.
            all.extend(self.store.at_risk_page(p, store, cursor, limit + 1).await?);
        }
        sort_at_risk(&mut all);
        let more = all.len() > limit;
        all.truncate(limit);
        let next = if more { all.last().cloned() } else { None };
        Ok((all, next))
    }

    /// A page of the stores with home customers that `readable` lets through, by store
    /// id, after the store `after`; with the store the next page continues after when
    /// there are more.
    pub async fn stores(
        &self,
        readable: impl Fn(&str) -> bool,
        limit: usize,
        after: Option<&str>,
    ) -> Result<(Vec<HomeStore>, Option<HomeStore>), ScoringError> {
        let mut page: Vec<HomeStore> = self
            .store
            .home_stores(self.partitions)
            .await?
            .into_iter()
            .filter(|s| after.is_none_or(|a| s.store.as_str() > a) && readable(&s.store))
            .take(limit + 1)
            .collect();
        let more = page.len() > limit;
        page.truncate(limit);
        let next = if more { page.last().cloned() } else { None };
        Ok((page, next))
    }

    /// `store`'s defection figures for the days `from..=to`, and its home customers now.
    pub async fn store_stats(
        &self,
        store: &str,
        from: Day,
        to: Day,
    ) -> Result<(DayStats, u64), ScoringError> {
        let mut total = DayStats::default();
        let mut customers = 0;
        for p in 0..self.partitions {
            let s = self.store.day_stats(p, store, from, to).await?;
            total.defected += s.defected;
            total.won_back += s.won_back;
            total.value_lost += s.value_lost;
            customers += self.store.home_customers(p, store).await?;
        }
        Ok((total, customers))
    }
}

/// A day as `YYYY-MM-DD`.
fn date(day: Day) -> String {
    NaiveDate::default()
        .checked_add_signed(TimeDelta::days(i64::from(day)))
        .map_or_else(|| day.to_string(), |d| d.to_string())
}

/// Parses a `YYYY-MM-DD` request field: exactly that shape (`1997-9-30` is refused), and
/// a real date.
fn parse_day(field: &str, value: &str) -> Result<Day, ScoringError> {
    let shaped = value.len() == 10
        && value.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        });
    shaped
        .then(|| NaiveDate::parse_from_str(value, "%Y-%m-%d").ok())
        .flatten()
        .map(day_of)
        .ok_or_else(|| {
            ScoringError::invalid(
                field,
                format!("must be a date as YYYY-MM-DD, got {}", quoted(value)),
            )
        })
}

/// Checks an identifier field (1 to 128 of `[A-Za-z0-9._:-]`) into `violations`.
fn check_id_field(violations: &mut Vec<FieldViolation>, field: &str, value: &str) {
    if let Err(why) = churnguard_domain::ids::check_id(value) {
        violations.push(FieldViolation::new(field, why));
    }
}

/// Parses an optional `YYYY-MM-DD` field into `violations`.
fn day_field(violations: &mut Vec<FieldViolation>, field: &str, value: &str) -> Option<Day> {
    match parse_day(field, value) {
        Ok(d) => Some(d),
        Err(ScoringError::InvalidArgument(v)) => {
            violations.extend(v.0);
            None
        }
        Err(_) => None,
    }
}

/// A list's page size (0: [`DEFAULT_PAGE`]); too large goes into `violations`.
fn page_size_field(violations: &mut Vec<FieldViolation>, page_size: u32) -> usize {
    if page_size > MAX_PAGE {
        violations.push(FieldViolation::new(
            "page_size",
            format!("is {page_size}; at most {MAX_PAGE} are allowed"),
        ));
    }
    if page_size == 0 {
        DEFAULT_PAGE
    } else {
        page_size as usize
    }
}

/// Where a list's page continues (`None` for the first page); a token `parse` does not
/// take back goes into `violations`.
fn page_token_field<T>(
    violations: &mut Vec<FieldViolation>,
    token: &str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Option<T> {
    if token.is_empty() {
        return None;
    }
    let parsed = parse(token);
    if parsed.is_none() {
        violations.push(FieldViolation::new(
            "page_token",
            "is not a token this service issued",
        ));
    }
    parsed
}

/// Every bad field at once, or nothing.
fn checked(violations: Vec<FieldViolation>) -> Result<(), Status> {
    if violations.is_empty() {
        Ok(())
    } else {
        Err(status(ScoringError::InvalidArgument(Violations(
            violations,
        ))))
    }
}

fn state(s: ChurnState) -> pb::ChurnState {
    match s {
        ChurnState::Active => pb::ChurnState::Active,
        ChurnState::AtRisk => pb::ChurnState::AtRisk,
        ChurnState::Defected => pb::ChurnState::Defected,
        ChurnState::WonBack => pb::ChurnState::WonBack,
    }
}

fn rule(r: Rule) -> pb::Rule {
    match r {
        Rule::PAliveLow => pb::Rule::PAliveLow,
        Rule::VisitsDropped => pb::Rule::VisitsDropped,
        Rule::SpendDropped => pb::Rule::SpendDropped,
        Rule::Overdue => pb::Rule::Overdue,
    }
}

impl CustomerRisk {
    fn into_proto(self, policies: &PolicyBook, horizon: &ValueHorizon) -> pb::CustomerRisk {
        let a = &self.risk.assessment;
        let f = &a.figures;
        let policy = self
            .risk
            .home_store
            .as_deref()
            .map_or(&policies.default, |s| policies.for_store(s));
        pb::CustomerRisk {
            customer_id: self.customer,
            as_of: date(self.as_of),
            state: state(self.recorded).into(),
            assessed_state: state(a.state).into(),
            reasons: a.fired.iter().map(|r| rule(*r).into()).collect(),
            p_alive: f.p_alive,
            expected_purchases: self.risk.expected_purchases,
            horizon_days: horizon.days().max(0) as u32,
            expected_spend_per_visit: self.risk.spend_per_visit,
            clv: self.risk.clv,
            value_at_risk: self.risk.value_at_risk,
            window: Some(pb::WindowFigures {
                recent_days: policy.recent_days.max(0) as u32,
                baseline_days: policy.baseline_days.max(0) as u32,
                recent_visits: f.recent_visits,
                baseline_visits: f.baseline_visits,
                recent_spend_minor_units: f.recent_spend,
                baseline_spend_minor_units: f.baseline_spend,
                days_since_last_visit: f.days_since_last,
                typical_gap_days: f.typical_gap,
            }),
            home_store_id: self.risk.home_store.unwrap_or_default(),
            model_version: self.model_version,
        }
    }
}

/// The gRPC face of [`QueryState`]; errors become statuses in [`ScoringError::status`].
#[derive(Debug, Clone)]
pub struct ScoringApi {
    state: Arc<QueryState>,
}

impl ScoringApi {
    pub fn new(state: Arc<QueryState>) -> Self {
        Self { state }
    }
}

/// Scores are read by people and services (or anyone, where callers are not
/// identified), not by store gateways, which only record swipes.
fn may_read_scores(caller: &Caller) -> Result<(), ScoringError> {
    match caller {
        Caller::Unidentified | Caller::Staff(_) => Ok(()),
        Caller::Store(_) | Caller::NoStore => Err(ScoringError::Forbidden {
            field: "authorization",
            message: "a store gateway records swipes and reads no scores".into(),
        }),
    }
}

/// A store's figures are read by those who read every store, and by its managers.
fn may_read_store(caller: &Caller, store: &str) -> Result<(), ScoringError> {
    may_read_scores(caller)?;
    if caller.may_read_store(store) {
        return Ok(());
    }
    let role = caller.role().map_or("caller", |r| r.as_str());
    Err(ScoringError::Forbidden {
        field: "store_id",
        message: format!("this {role} does not read store {store}"),
    })
}

/// What covers the whole chain (a refit, the holdout check) is asked for by those who
/// read every store: owner, analyst, service (or anyone, where callers are not
/// identified).
fn may_read_chain(caller: &Caller, what: &str) -> Result<(), ScoringError> {
    may_read_scores(caller)?;
    if caller.reads_every_store() {
        return Ok(());
    }
    let role = caller.role().map_or("caller", |r| r.as_str());
    Err(ScoringError::Forbidden {
        field: "authorization",
        message: format!(
            "a {role} reads only its stores' scores; {what} is asked for by those who read every store"
        ),
    })
}

/// The proto form of a holdout check.
fn holdout_proto(c: HoldoutCheck) -> pb::CheckHoldoutResponse {
    pb::CheckHoldoutResponse {
        first_day: date(c.first_day),
        calibration_end: date(c.calibration_end),
        holdout_end: date(c.holdout_end),
        calibration_weeks: c.calibration_weeks,
        holdout_weeks: c.holdout_weeks,
        bg_nbd: Some(pb::BgNbdParameters {
            r: c.model.r,
            alpha: c.model.alpha,
            a: c.model.a,
            b: c.model.b,
        }),
        bg_nbd_log_likelihood: c.log_likelihood,
        customers: c.customers,
        excluded_customers: c.excluded,
        calibration_repeat_purchases: c.calibration_purchases,
        actual_holdout_purchases: c.actual,
        predicted_holdout_purchases: c.predicted,
        by_calibration_purchases: c
            .by_x
            .into_iter()
            .map(|r| pb::HoldoutRow {
                calibration_purchases: r.x,
                or_more: r.or_more,
                customers: r.customers,
                actual_mean: r.actual_mean,
                predicted_mean: r.predicted_mean,
            })
            .collect(),
        weekly: c
            .weekly
            .into_iter()
            .map(|w| pb::HoldoutWeek {
                week: w.week,
                actual: w.actual,
                predicted: w.predicted,
            })
            .collect(),
    }
}

/// Logs what the caller will not see, once, at the boundary.
fn status(e: ScoringError) -> Status {
    let status = e.status();
    if matches!(
        status.code(),
        tonic::Code::Internal | tonic::Code::Unavailable
    ) {
        tracing::warn!(error = %e, source = ?std::error::Error::source(&e), "query failed");
    }
    status
}

#[tonic::async_trait]
impl ChurnScoring for ScoringApi {
    async fn get_customer_risk(
        &self,
        request: Request<pb::GetCustomerRiskRequest>,
    ) -> Result<Response<pb::GetCustomerRiskResponse>, Status> {
        let caller = Caller::of(&request);
        may_read_scores(&caller).map_err(status)?;
        let r = request.into_inner();
        let mut violations = Vec::new();
        check_id_field(&mut violations, "customer_id", &r.customer_id);
        let as_of = if r.as_of.is_empty() {
            None
        } else {
            day_field(&mut violations, "as_of", &r.as_of)
        };
        checked(violations)?;
        let risk = self
            .state
            .customer_risk(&r.customer_id, as_of)
            .await
            .map_err(status)?;
        // A customer of stores the caller does not read is, to it, no customer at all.
        let readable = risk
            .risk
            .home_store
            .as_deref()
            .is_some_and(|store| caller.may_read_store(store));
        if !readable && !caller.reads_every_store() {
            return Err(status(ScoringError::UnknownCustomer(r.customer_id)));
        }
        Ok(Response::new(pb::GetCustomerRiskResponse {
            risk: Some(risk.into_proto(&self.state.policies, &self.state.horizon)),
        }))
    }

    async fn list_at_risk_customers(
        &self,
        request: Request<pb::ListAtRiskCustomersRequest>,
    ) -> Result<Response<pb::ListAtRiskCustomersResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        may_read_store(&caller, &r.store_id).map_err(status)?;
        let mut violations = Vec::new();
        check_id_field(&mut violations, "store_id", &r.store_id);
        let limit = page_size_field(&mut violations, r.page_size);
        let cursor = page_token_field(&mut violations, &r.page_token, AtRisk::from_page_token);
        checked(violations)?;
        let (page, next) = self
            .state
            .at_risk(&r.store_id, limit, cursor.as_ref())
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListAtRiskCustomersResponse {
            customers: page
                .into_iter()
                .map(|e| pb::AtRiskCustomer {
                    customer_id: e.customer,
                    value_at_risk_minor_units: e.value_at_risk,
                })
                .collect(),
            next_page_token: next.map(|n| n.page_token()).unwrap_or_default(),
        }))
    }

    async fn get_store_defection_stats(
        &self,
        request: Request<pb::GetStoreDefectionStatsRequest>,
    ) -> Result<Response<pb::GetStoreDefectionStatsResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        may_read_store(&caller, &r.store_id).map_err(status)?;
        let mut violations = Vec::new();
        check_id_field(&mut violations, "store_id", &r.store_id);
        let from = day_field(&mut violations, "from_date", &r.from_date);
        let to = day_field(&mut violations, "to_date", &r.to_date);
        if let (Some(f), Some(t)) = (from, to)
            && t < f
        {
            violations.push(FieldViolation::new("to_date", "is before from_date"));
        }
        let (Some(from), Some(to), true) = (from, to, violations.is_empty()) else {
            return Err(status(ScoringError::InvalidArgument(Violations(
                violations,
            ))));
        };
        let (stats, customers) = self
            .state
            .store_stats(&r.store_id, from, to)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::GetStoreDefectionStatsResponse {
            store_id: r.store_id,
            defected: stats.defected,
            won_back: stats.won_back,
            value_lost_minor_units: stats.value_lost,
            home_customers: customers,
            defection_rate: if customers == 0 {
                0.0
            } else {
                stats.defected as f64 / customers as f64
            },
        }))
    }

    async fn list_stores(
        &self,
        request: Request<pb::ListStoresRequest>,
    ) -> Result<Response<pb::ListStoresResponse>, Status> {
        let caller = Caller::of(&request);
        may_read_scores(&caller).map_err(status)?;
        let r = request.into_inner();
        let mut violations = Vec::new();
        let limit = page_size_field(&mut violations, r.page_size);
        let after = page_token_field(&mut violations, &r.page_token, HomeStore::after_page_token);
        checked(violations)?;
        let (page, next) = self
            .state
            .stores(
                |store| caller.may_read_store(store),
                limit,
                after.as_deref(),
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListStoresResponse {
            stores: page
                .into_iter()
                .map(|s| pb::Store {
                    store_id: s.store,
                    home_customers: s.customers,
                })
                .collect(),
            next_page_token: next.map(|n| n.page_token()).unwrap_or_default(),
        }))
    }

    async fn get_model(
        &self,
        request: Request<pb::GetModelRequest>,
    ) -> Result<Response<pb::GetModelResponse>, Status> {
        may_read_scores(&Caller::of(&request)).map_err(status)?;
        let m = self.state.model().await.map_err(status)?;
        Ok(Response::new(pb::GetModelResponse {
            version: m.version,
            fitted_at: m.fitted_at,
            as_of: date(m.as_of_day),
            customers: m.customers as u64,
            population: m.population.max(m.customers) as u64,
            bg_nbd: Some(pb::BgNbdParameters {
                r: m.bg_nbd.r,
                alpha: m.bg_nbd.alpha,
                a: m.bg_nbd.a,
                b: m.bg_nbd.b,
            }),
            bg_nbd_log_likelihood: m.bg_nbd_log_likelihood,
            gamma_gamma: m.gamma_gamma.map(|g| pb::GammaGammaParameters {
                p: g.p,
                q: g.q,
                gamma: g.gamma,
            }),
        }))
    }

    async fn request_refit(
        &self,
        request: Request<pb::RequestRefitRequest>,
    ) -> Result<Response<pb::RequestRefitResponse>, Status> {
        let caller = Caller::of(&request);
        may_read_chain(&caller, "a refit").map_err(status)?;
        let current_version = self.state.request_refit().await.map_err(status)?;
        tracing::info!(current_version, caller = %caller.actor(), "refit asked for");
        Ok(Response::new(pb::RequestRefitResponse { current_version }))
    }

    async fn check_holdout(
        &self,
        request: Request<pb::CheckHoldoutRequest>,
    ) -> Result<Response<pb::CheckHoldoutResponse>, Status> {
        let caller = Caller::of(&request);
        may_read_chain(&caller, "a holdout check").map_err(status)?;
        let r = request.into_inner();
        let mut violations = Vec::new();
        let calibration_end = if r.calibration_end.is_empty() {
            violations.push(FieldViolation::new(
                "calibration_end",
                "is required: the last day of the calibration period, YYYY-MM-DD",
            ));
            None
        } else {
            day_field(&mut violations, "calibration_end", &r.calibration_end)
        };
        let holdout_end = if r.holdout_end.is_empty() {
            None
        } else {
            day_field(&mut violations, "holdout_end", &r.holdout_end)
        };
        if let (Some(c), Some(h)) = (calibration_end, holdout_end)
            && h <= c
        {
            violations.push(FieldViolation::new(
                "holdout_end",
                "must be after calibration_end",
            ));
        }
        let (Some(calibration_end), true) = (calibration_end, violations.is_empty()) else {
            return Err(status(ScoringError::InvalidArgument(Violations(
                violations,
            ))));
        };
        let started = std::time::Instant::now();
        let check = self
            .state
            .check_holdout(calibration_end, holdout_end)
            .await
            .map_err(status)?;
        tracing::info!(
            caller = %caller.actor(),
            calibration_end = %r.calibration_end,
            customers = check.customers,
            actual = check.actual,
            predicted = check.predicted,
            ms = started.elapsed().as_millis() as u64,
            "holdout check made"
        );
        Ok(Response::new(holdout_proto(check)))
    }
}

/// A bound, ready-to-run query API server: the runtime's gRPC server with the
/// ChurnScoring service, health following a Redis `PING`.
#[derive(Debug)]
pub struct ApiServer {
    server: GrpcServer,
    state: Arc<QueryState>,
    health_probe_interval: Duration,
    shutdown_grace: Duration,
    limits: churnguard_config::ServerLimits,
}

impl ApiServer {
    /// Binds `addr` (port 0 picks a free one).
    pub async fn bind(addr: &str, state: QueryState) -> Result<Self, ScoringError> {
        Ok(Self {
            server: GrpcServer::bind(addr).await?,
            state: Arc::new(state),
            health_probe_interval: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(10),
            limits: churnguard_config::ServerLimits::default(),
        })
    }

    /// The largest request and the calls per connection (defaults: [`ServerLimits`]).
    ///
    /// [`ServerLimits`]: churnguard_config::ServerLimits
    pub fn with_limits(mut self, limits: &churnguard_config::ServerLimits) -> Self {
        self.limits = limits.clone();
        self
    }

    /// How often Redis is probed for health, and how long in-flight calls may take to
    /// finish at shutdown.
    pub fn with_timings(
        mut self,
        health_probe_interval: Duration,
        shutdown_grace: Duration,
    ) -> Self {
        self.health_probe_interval = health_probe_interval;
        self.shutdown_grace = shutdown_grace;
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Serves the admin endpoint (`/metrics`, `/healthz`, `/readyz`) on `addr` too, if
    /// any ([`GrpcServer::with_admin`]).
    pub async fn with_admin(mut self, addr: Option<&str>) -> Result<Self, ScoringError> {
        self.server = self.server.with_admin(addr).await?;
        Ok(self)
    }

    /// Serves TLS or mutual TLS as `tls` says; plaintext when it is empty
    /// ([`GrpcServer::with_tls`]).
    pub fn with_tls(mut self, tls: &churnguard_config::TlsSettings) -> Result<Self, ScoringError> {
        self.server = self.server.with_tls(tls)?;
        Ok(self)
    }

    /// Authenticates callers as `auth` says; off when it is empty
    /// ([`GrpcServer::with_auth`]; after [`ApiServer::with_tls`]).
    pub fn with_auth(
        mut self,
        auth: &churnguard_config::AuthSettings,
    ) -> Result<Self, ScoringError> {
        self.server = self.server.with_auth(auth)?;
        Ok(self)
    }

    /// Keeps each caller to its calls per second ([`GrpcServer::with_rate_limits`]).
    pub fn with_rate_limits(mut self, limits: &churnguard_config::RateLimitSettings) -> Self {
        self.server = self.server.with_rate_limits(limits);
        self
    }

    /// Where the admin endpoint listens, if there is one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.server.admin_addr()
    }

    fn into_server(self) -> GrpcServer {
        let store = self.state.store.clone();
        self.server
            .with_log_name("churn-scoring query API")
            .reflecting(churnguard_proto::FILE_DESCRIPTOR_SET)
            .add_service(
                ChurnScoringServer::new(ScoringApi::new(self.state))
                    .max_decoding_message_size(self.limits.max_message_bytes),
            )
            .max_concurrent_streams(self.limits.max_streams_per_connection)
            .with_health_probe("Redis", self.health_probe_interval, move || {
                let store = store.clone();
                async move { store.ping().await }
            })
            .with_shutdown_grace(self.shutdown_grace)
    }

    /// Serves until `shutdown` completes; then stops accepting, lets in-flight calls
    /// finish within the grace period and reports NOT_SERVING.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ScoringError> {
        self.into_server().run_until(shutdown).await?;
        Ok(())
    }

    /// Serves on a background task until [`Running::stop`] (or drop).
    pub fn spawn(self) -> Running {
        self.into_server().spawn()
    }
}

/// The query API on a background task: where it listens, and a graceful stop.
pub type Running = churnguard_runtime::Running<ScoringError>;
