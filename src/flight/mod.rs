//! The Flight service. Each RPC lives in its own file; this impl only routes: decode, call one
//! function, map the error.

mod cancel;
mod direct;
mod do_action;
mod do_get;
mod do_put;
pub mod encode;
mod endpoints;
pub mod frame;
mod get_flight_info;
mod list_flights;
mod sql;
pub mod ticket;
pub mod wire;

use arrow_flight::{
    flight_service_server::FlightService, Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor,
    FlightInfo, HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use crate::state::AppState;
pub use cancel::Running;
pub use direct::Direct;

use crate::observe::BoxStream;

/// Bridge's `FlightService`.
#[derive(Debug, Clone)]
pub struct BridgeFlight {
    state: AppState,
}

impl BridgeFlight {
    pub fn new(state: AppState) -> Self {
        BridgeFlight { state }
    }

    /// Every RPC but Handshake: a valid bearer token unless Bridge runs anonymously. Returns
    /// who called (None: anonymous).
    fn authorize<T>(&self, req: &Request<T>) -> Result<Option<String>, Status> {
        self.state.auth().map(|a| a.check(req.metadata(), req.remote_addr())).transpose()
    }

    /// DoGet as frames: what [`Direct`] writes straight to the wire (and the trait's `do_get`
    /// turns into `FlightData`).
    pub async fn do_get_frames(&self, req: Request<Ticket>) -> Result<Response<BoxStream<frame::Frame>>, Status> {
        let principal = self.authorize(&req)?;
        let peer = req.remote_addr();
        let metadata = req.metadata().clone();
        let id = crate::observe::request_id(&metadata);
        let header =
            id.parse().map_err(|_| Status::from(crate::error::Error::internal("request id is not a header value")))?;
        let caller = crate::observe::Caller { request_id: id, peer, principal };
        let span = crate::trace::rpc_span("DoGet", &metadata.clone().into_headers());
        let trace_id = crate::trace::trace_id(&span);
        let stream = do_get::do_get(&self.state, req.into_inner(), &metadata, caller).instrument(span).await?;
        let mut response = Response::new(stream);
        response.metadata_mut().insert("x-request-id", header);
        if let Some(value) = trace_id.and_then(|t| t.parse().ok()) {
            response.metadata_mut().insert("x-trace-id", value);
        }
        Ok(response)
    }
}

fn unimplemented(what: &str) -> Status {
    Status::unimplemented(format!("{what} is not supported by Bridge: it is read-only; use DoGet with a ticket"))
}

#[tonic::async_trait]
impl FlightService for BridgeFlight {
    type HandshakeStream = BoxStream<HandshakeResponse>;
    type ListFlightsStream = BoxStream<FlightInfo>;
    type DoGetStream = BoxStream<FlightData>;
    type DoPutStream = BoxStream<PutResult>;
    type DoExchangeStream = BoxStream<FlightData>;
    type DoActionStream = BoxStream<arrow_flight::Result>;
    type ListActionsStream = BoxStream<ActionType>;

    async fn handshake(
        &self,
        req: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        crate::observe::counted("Handshake", async {
            let mut response = Response::new(Box::pin(futures::stream::empty()) as Self::HandshakeStream);
            if let Some(auth) = self.state.auth() {
                let bearer = auth.handshake(req.metadata())?;
                let value = bearer
                    .parse()
                    .map_err(|_| Status::from(crate::error::Error::internal("token is not a valid header value")))?;
                response.metadata_mut().insert("authorization", value);
            }
            Ok(response)
        })
        .await
    }

    async fn list_flights(&self, req: Request<Criteria>) -> Result<Response<Self::ListFlightsStream>, Status> {
        crate::observe::counted("ListFlights", async {
            self.authorize(&req)?;
            let infos = list_flights::list_flights(&self.state).await?;
            Ok(Response::new(Box::pin(futures::stream::iter(infos.into_iter().map(Ok))) as Self::ListFlightsStream))
        })
        .await
    }

    async fn get_flight_info(&self, req: Request<FlightDescriptor>) -> Result<Response<FlightInfo>, Status> {
        crate::observe::counted("GetFlightInfo", async {
            self.authorize(&req)?;
            Ok(Response::new(get_flight_info::get_flight_info(&self.state, req.into_inner()).await?))
        })
        .await
    }

    async fn poll_flight_info(&self, req: Request<FlightDescriptor>) -> Result<Response<PollInfo>, Status> {
        crate::observe::counted("PollFlightInfo", async {
            self.authorize(&req)?;
            Err(Status::unimplemented("PollFlightInfo is not supported; use GetFlightInfo (queries start on DoGet)"))
        })
        .await
    }

    async fn get_schema(&self, req: Request<FlightDescriptor>) -> Result<Response<SchemaResult>, Status> {
        crate::observe::counted("GetSchema", async {
            self.authorize(&req)?;
            Ok(Response::new(get_flight_info::get_schema(&self.state, req.into_inner()).await?))
        })
        .await
    }

    async fn do_get(&self, req: Request<Ticket>) -> Result<Response<Self::DoGetStream>, Status> {
        use futures::StreamExt;
        let frames = self.do_get_frames(req).await?;
        Ok(frames.map(|s| s.map(|r| r.map(frame::Frame::into_data)).boxed()))
    }

    async fn do_put(&self, req: Request<Streaming<FlightData>>) -> Result<Response<Self::DoPutStream>, Status> {
        crate::observe::counted("DoPut", async {
            self.authorize(&req)?;
            let result = do_put::do_put(req.into_inner()).await?;
            Ok(Response::new(Box::pin(futures::stream::once(async { Ok(result) })) as Self::DoPutStream))
        })
        .await
    }

    async fn do_exchange(
        &self,
        req: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        crate::observe::counted("DoExchange", async {
            self.authorize(&req)?;
            Err(unimplemented("DoExchange"))
        })
        .await
    }

    async fn do_action(&self, req: Request<Action>) -> Result<Response<Self::DoActionStream>, Status> {
        crate::observe::counted("DoAction", async {
            self.authorize(&req)?;
            let bodies = do_action::do_action(&self.state, req.into_inner()).await?;
            let results = bodies.into_iter().map(|body| Ok(arrow_flight::Result { body: body.into() }));
            Ok(Response::new(Box::pin(futures::stream::iter(results)) as Self::DoActionStream))
        })
        .await
    }

    async fn list_actions(&self, req: Request<Empty>) -> Result<Response<Self::ListActionsStream>, Status> {
        crate::observe::counted("ListActions", async {
            self.authorize(&req)?;
            let actions = do_action::list_actions().into_iter().map(Ok);
            Ok(Response::new(Box::pin(futures::stream::iter(actions)) as Self::ListActionsStream))
        })
        .await
    }
}
