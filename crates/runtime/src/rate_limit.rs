//! Rate limits per caller ([`crate::GrpcServer::with_rate_limits`]): each caller has its
//! own budget of calls per second, by the kind of caller
//! ([`churnguard_config::RateLimitSettings`]), kept by a keyed GCRA limiter (`governor`).
//! A call over the budget is answered RESOURCE_EXHAUSTED before the service sees it, with
//! the time to wait in a `google.rpc.RetryInfo` detail and in `grpc-retry-pushback-ms`.
//!
//! The caller is the one [`crate::auth`] found (it runs first); where identities are not
//! required, an unidentified caller is counted by its IP address. gRPC health is not
//! limited: probes must always get through.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use churnguard_config::RateLimitSettings;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use tonic::Code;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic_types::{ErrorDetails, StatusExt};

use crate::identity::{Caller, Role};

/// The caller of a request no authentication looked at.
const UNIDENTIFIED: Caller = Caller::Unidentified;

/// Who a budget belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Store(String),
    Staff(String),
    Service(String),
    Address(Option<IpAddr>),
}

/// One limiter per kind of caller (absent: not limited).
pub struct RateLimits {
    store: Option<DefaultKeyedRateLimiter<Key>>,
    staff: Option<DefaultKeyedRateLimiter<Key>>,
    service: Option<DefaultKeyedRateLimiter<Key>>,
    unidentified: Option<DefaultKeyedRateLimiter<Key>>,
    clock: DefaultClock,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits").finish_non_exhaustive()
    }
}

/// A call refused for its caller's rate: how long until one would be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled(pub Duration);

impl RateLimits {
    pub fn new(settings: &RateLimitSettings) -> Self {
        let limiter = |per_second: u32| {
            NonZeroU32::new(per_second)
                .map(|n| DefaultKeyedRateLimiter::keyed(Quota::per_second(n)))
        };
        Self {
            store: limiter(settings.store_calls_per_second),
            staff: limiter(settings.staff_calls_per_second),
            service: limiter(settings.service_calls_per_second),
            unidentified: limiter(settings.unidentified_calls_per_second),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one call from `caller`'s budget (`address`: where it calls from), or says how
    /// long until it could.
    pub fn check(&self, caller: &Caller, address: Option<IpAddr>) -> Result<(), Throttled> {
        let (limiter, key) = match caller {
            Caller::Store(store) => (&self.store, Key::Store(store.clone())),
            Caller::Staff(staff) if staff.role == Role::Service => {
                (&self.service, Key::Service(staff.subject.clone()))
            }
            Caller::Staff(staff) => (&self.staff, Key::Staff(staff.subject.clone())),
            Caller::Unidentified | Caller::NoStore => (&self.unidentified, Key::Address(address)),
        };
        let Some(limiter) = limiter else {
            return Ok(());
        };
        limiter
            .check_key(&key)
            .map_err(|not_until| Throttled(not_until.wait_time_from(self.clock.now())))
    }

    /// Forgets callers whose budgets are full again (keeps the key sets small).
    pub fn forget_idle(&self) {
        for limiter in [&self.store, &self.staff, &self.service, &self.unidentified]
            .into_iter()
            .flatten()
        {
            limiter.retain_recent();
        }
    }
}

/// The middleware ([`axum::middleware::from_fn_with_state`]) that keeps every caller to
/// its budget.
pub(crate) async fn limit(
    State(limits): State<Arc<RateLimits>>,
    request: Request,
    next: Next,
) -> Response {
    if crate::health::is_health_call(request.uri().path()) {
        return next.run(request).await;
    }
    let extensions = request.extensions();
    let caller = extensions.get::<Caller>().unwrap_or(&UNIDENTIFIED);
    // Only callers counted by their address need it.
    let address = match caller {
        Caller::Unidentified | Caller::NoStore => extensions
            .get::<TcpConnectInfo>()
            .and_then(|info| info.remote_addr())
            .or_else(|| {
                extensions
                    .get::<TlsConnectInfo<TcpConnectInfo>>()
                    .and_then(|info| info.get_ref().remote_addr())
            })
            .map(|a| a.ip()),
        Caller::Store(_) | Caller::Staff(_) => None,
    };
    let checked = limits.check(caller, address);
    match checked {
        Ok(()) => next.run(request).await,
        Err(Throttled(wait)) => throttled(wait),
    }
}

/// RESOURCE_EXHAUSTED with the time to wait, rounded up to the millisecond.
fn throttled(wait: Duration) -> Response {
    let wait = Duration::from_millis(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX) + 1);
    let mut status = tonic::Status::with_error_details(
        Code::ResourceExhausted,
        format!(
            "this caller is over its rate limit; retry in {} ms",
            wait.as_millis()
        ),
        ErrorDetails::with_retry_info(Some(wait)),
    );
    if let Ok(value) = wait.as_millis().to_string().parse() {
        status
            .metadata_mut()
            .insert("grpc-retry-pushback-ms", value);
    }
    status.into_http()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Staff;

    #[test]
    fn each_caller_has_its_own_budget_by_kind() {
        let limits = RateLimits::new(&RateLimitSettings {
            store_calls_per_second: 3,
            staff_calls_per_second: 0,
            service_calls_per_second: 1,
            unidentified_calls_per_second: 2,
        });
        let s1 = Caller::Store("s-1".into());
        let s2 = Caller::Store("s-2".into());
        for _ in 0..3 {
            assert_eq!(limits.check(&s1, None), Ok(()));
        }
        let Err(Throttled(wait)) = limits.check(&s1, None) else {
            panic!("the fourth call within a second is refused");
        };
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(334),
            "{wait:?}"
        );
        assert_eq!(
            limits.check(&s2, None),
            Ok(()),
            "another store has its own budget"
        );

        let manager = Caller::Staff(Staff {
            subject: "m-1".into(),
            role: Role::StoreManager,
            stores: vec![],
        });
        for _ in 0..100 {
            assert_eq!(
                limits.check(&manager, None),
                Ok(()),
                "staff are not limited here"
            );
        }
        let service = Caller::Staff(Staff {
            subject: "importer".into(),
            role: Role::Service,
            stores: vec![],
        });
        assert_eq!(limits.check(&service, None), Ok(()));
        assert!(limits.check(&service, None).is_err());

        let here = Some(IpAddr::from([10, 0, 0, 1]));
        let there = Some(IpAddr::from([10, 0, 0, 2]));
        assert!(limits.check(&Caller::Unidentified, here).is_ok());
        assert!(limits.check(&Caller::Unidentified, here).is_ok());
        assert!(limits.check(&Caller::Unidentified, here).is_err());
        assert!(
            limits.check(&Caller::Unidentified, there).is_ok(),
            "by address"
        );
        limits.forget_idle();
    }

    #[test]
    fn a_throttled_call_says_when_to_retry() {
        let response = throttled(Duration::from_micros(41_500));
        let status = tonic::Status::from_header_map(response.headers()).expect("a status");
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(
            status.message().contains("retry in 42 ms"),
            "{}",
            status.message()
        );
        assert_eq!(
            status.get_details_retry_info().and_then(|r| r.retry_delay),
            Some(Duration::from_millis(42))
        );
        assert_eq!(
            response
                .headers()
                .get("grpc-retry-pushback-ms")
                .map(|v| v.as_bytes()),
            Some(&b"42"[..])
        );
    }
}
