//! DoGet with its own gRPC codec: the answer's record batches are written straight into the
//! buffer tonic sends (see [`Frame`]), where arrow-flight's generated service would take ready
//! `FlightData` and copy it once more. Every other RPC goes to the generated service.

use std::{
    convert::Infallible,
    sync::Arc,
    task::{Context, Poll},
};

use arrow_flight::{flight_service_server::FlightServiceServer, FlightData, Ticket};
use tonic::{
    body::Body,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    codegen::{http, BoxFuture, Service},
    server::{Grpc, NamedService, ServerStreamingService},
    Request, Response, Status,
};
use tonic_prost::ProstCodec;

use super::{frame::Frame, BridgeFlight};
use crate::observe::BoxStream;

const DO_GET: &str = "/arrow.flight.protocol.FlightService/DoGet";

/// The Flight service as tonic serves it: DoGet here, the rest through arrow-flight's.
#[derive(Clone)]
pub struct Direct {
    flight: Arc<BridgeFlight>,
    generated: FlightServiceServer<BridgeFlight>,
    max_message_bytes: usize,
}

impl Direct {
    pub fn new(flight: BridgeFlight, max_message_bytes: usize) -> Self {
        let flight = Arc::new(flight);
        let generated = FlightServiceServer::from_arc(flight.clone())
            .max_decoding_message_size(max_message_bytes)
            .max_encoding_message_size(max_message_bytes);
        Direct { flight, generated, max_message_bytes }
    }
}

impl NamedService for Direct {
    const NAME: &'static str = <FlightServiceServer<BridgeFlight> as NamedService>::NAME;
}

impl Service<http::Request<Body>> for Direct {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        if req.uri().path() != DO_GET {
            return Box::pin(self.generated.call(req));
        }
        let (method, max) = (DoGet(self.flight.clone()), self.max_message_bytes);
        Box::pin(async move {
            let mut grpc = Grpc::new(FrameCodec).apply_max_message_size_config(Some(max), Some(max));
            Ok(grpc.server_streaming(method, req).await)
        })
    }
}

struct DoGet(Arc<BridgeFlight>);

impl ServerStreamingService<Ticket> for DoGet {
    type Response = Frame;
    type ResponseStream = BoxStream<Frame>;
    type Future = BoxFuture<Response<Self::ResponseStream>, Status>;

    fn call(&mut self, req: Request<Ticket>) -> Self::Future {
        let flight = self.0.clone();
        Box::pin(async move { flight.do_get_frames(req).await })
    }
}

/// Tickets in (protobuf), frames out.
#[derive(Debug, Clone, Copy, Default)]
struct FrameCodec;

impl Codec for FrameCodec {
    type Encode = Frame;
    type Decode = Ticket;
    type Encoder = FrameEncoder;
    type Decoder = TicketDecoder;

    fn encoder(&mut self) -> FrameEncoder {
        FrameEncoder
    }

    fn decoder(&mut self) -> TicketDecoder {
        TicketDecoder(ProstCodec::<FlightData, Ticket>::default().decoder())
    }
}

#[derive(Debug)]
struct FrameEncoder;

impl Encoder for FrameEncoder {
    type Item = Frame;
    type Error = Status;

    fn encode(&mut self, item: Frame, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.write(dst)
    }
}

struct TicketDecoder(<ProstCodec<FlightData, Ticket> as Codec>::Decoder);

impl Decoder for TicketDecoder {
    type Item = Ticket;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Ticket>, Status> {
        self.0.decode(src)
    }
}
