//! The generated servers decode requests with `RequestCodec`: a request that cannot be
//! decoded is the caller's mistake (INVALID_ARGUMENT), for every service. Checked here on
//! a real ChurnScoring server whose handlers refuse everything, so any answer other than
//! UNIMPLEMENTED comes from decoding.

use std::marker::PhantomData;

use churnguard_proto::scoring::v1 as pb;
use churnguard_proto::scoring::v1::churn_scoring_server::{ChurnScoring, ChurnScoringServer};
use prost::Message;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::codec::{BufferSettings, Codec, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Code, Request, Response, Status};

struct Refuse;

#[tonic::async_trait]
impl ChurnScoring for Refuse {
    async fn get_customer_risk(
        &self,
        _: Request<pb::GetCustomerRiskRequest>,
    ) -> Result<Response<pb::GetCustomerRiskResponse>, Status> {
        Err(Status::unimplemented("refused by the test"))
    }
    async fn list_at_risk_customers(
        &self,
        _: Request<pb::ListAtRiskCustomersRequest>,
    ) -> Result<Response<pb::ListAtRiskCustomersResponse>, Status> {
        Err(Status::unimplemented("refused by the test"))
    }
    async fn get_store_defection_stats(
        &self,
        _: Request<pb::GetStoreDefectionStatsRequest>,
    ) -> Result<Response<pb::GetStoreDefectionStatsResponse>, Status> {
        Err(Status::unimplemented("refused by the test"))
    }
    async fn list_stores(
        &self,
        _: Request<pb::ListStoresRequest>,
    ) -> Result<Response<pb::ListStoresResponse>, Status> {
        Err(Status::unimplemented("refused by the test"))
    }
    async fn get_model(
        &self,
        _: Request<pb::GetModelRequest>,
    ) -> Result<Response<pb::GetModelResponse>, Status> {
        Err(Status::unimplemented("refused by the test"))
    }
    async fn request_refit(
        &self,
        _: Request<pb::RequestRefitRequest>,
    ) -> Result<Response<pb::RequestRefitResponse>, Status> {
        Err(Status::unimplemented("refused by the test"))
    }
    async fn check_holdout(
        &self,
        _: Request<pb::CheckHoldoutRequest>,
    ) -> Result<Response<pb::CheckHoldoutResponse>, Status> {
        Err(Status::unimplemented("refused by the test"))
    }
}

/// Sends raw bytes as the request message; decodes the answer as `D`.
struct RawCodec<D>(PhantomData<D>);

struct RawEncoder;

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        use prost::bytes::BufMut;
        buf.put_slice(&item);
        Ok(())
    }
}

impl<D: Message + Default + Send + 'static> Codec for RawCodec<D> {
    type Encode = Vec<u8>;
    type Decode = D;
    type Encoder = RawEncoder;
    type Decoder = tonic_prost::ProstDecoder<D>;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstCodec::<Vec<u8>, D>::raw_decoder(BufferSettings::default())
    }
}

async fn serve() -> Channel {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(
        Server::builder()
            .add_service(ChurnScoringServer::new(Refuse))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect")
}

async fn get_customer_risk(channel: &Channel, body: Vec<u8>) -> Status {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.expect("ready");
    grpc.unary(
        Request::new(body),
        PathAndQuery::from_static("/churnguard.scoring.v1.ChurnScoring/GetCustomerRisk"),
        RawCodec::<pb::GetCustomerRiskResponse>(PhantomData),
    )
    .await
    .expect_err("the test server answers nothing with OK")
}

#[tokio::test]
async fn an_undecodable_request_is_invalid_argument() {
    let channel = serve().await;
    let cases: [(&str, Vec<u8>); 3] = [
        // A varint that never ends.
        ("random bytes", vec![0xff; 11]),
        // Field 1 (`customer_id`, a string) sent as a varint.
        ("wrong wire type", vec![0x08, 0x01]),
        // `customer_id: <0xc3 0x28>`: a string that is not UTF-8.
        ("invalid UTF-8", vec![0x0a, 0x02, 0xc3, 0x28]),
    ];
    for (what, body) in cases {
        let status = get_customer_risk(&channel, body).await;
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
        assert!(
            status
                .message()
                .starts_with("the request could not be decoded: "),
            "{what}: {}",
            status.message()
        );
    }
    // A request that decodes reaches the handler.
    let valid = pb::GetCustomerRiskRequest {
        customer_id: "cust-1".into(),
        as_of: String::new(),
    }
    .encode_to_vec();
    let status = get_customer_risk(&channel, valid).await;
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
}
