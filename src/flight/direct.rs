//! DoGet served by hand, every other RPC by arrow-flight's generated service. tonic encodes a
//! streamed response message by message into one growing buffer; a DoGet answer here goes out as
//! [`Frame::chunks`]: one chunk a message, copied once, or for large messages the record
//! batches' own buffers. The gRPC framing is the protocol's: a length-prefixed `Ticket`
//! in, length-prefixed `FlightData` out, `grpc-status` in the trailers (or, for an error before
//! the first message, in the headers: a trailers-only response).

use std::{
    collections::VecDeque,
    convert::Infallible,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use arrow_flight::{flight_service_server::FlightServiceServer, Ticket};
use bytes::{Buf, Bytes};
use futures::StreamExt;
use http_body::Frame as HttpFrame;
use http_body_util::BodyExt;
use prost::Message;
use tonic::{
    body::Body,
    codegen::{http, BoxFuture, Service},
    server::NamedService,
    Code, Request, Status,
};

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
        let (flight, max) = (self.flight.clone(), self.max_message_bytes);
        Box::pin(async move {
            let answer = async {
                let ticket = read_ticket(req, max).await?;
                flight.do_get_frames(ticket).await
            };
            Ok(match answer.await {
                Ok(response) => respond(response),
                Err(status) => status.into_http(),
            })
        })
    }
}

/// The request's one length-prefixed, uncompressed `Ticket`, with its metadata and extensions.
async fn read_ticket(req: http::Request<Body>, max: usize) -> Result<Request<Ticket>, Status> {
    let (parts, body) = req.into_parts();
    // Read no more than one message's worth: a client may not make the server buffer more.
    let body =
        http_body_util::Limited::new(body, max + 5).collect().await.map_err(|e| match e
            .is::<http_body_util::LengthLimitError>()
        {
            true => Status::resource_exhausted(format!("the request is over {max} bytes")),
            false => Status::cancelled(format!("reading the request: {e}")),
        })?;
    let mut bytes = body.to_bytes();
    if bytes.len() < 5 {
        return Err(Status::internal("Missing request message."));
    }
    if bytes.get_u8() != 0 {
        return Err(Status::unimplemented("compressed requests are not supported"));
    }
    let len = bytes.get_u32() as usize;
    if len > max {
        return Err(Status::resource_exhausted(format!("the request is {len} bytes, over {max}")));
    }
    if bytes.len() != len {
        return Err(Status::internal("the request's length prefix does not match its body"));
    }
    let ticket = Ticket::decode(bytes).map_err(|e| Status::internal(format!("decoding the ticket: {e}")))?;
    Ok(Request::from_http(http::Request::from_parts(parts, ticket)))
}

fn respond(response: tonic::Response<BoxStream<Frame>>) -> http::Response<Body> {
    let (metadata, frames, extensions) = response.into_parts();
    let mut http = http::Response::new(Body::new(Answer { frames, pending: VecDeque::new(), done: false }));
    *http.headers_mut() = metadata.into_headers();
    http.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/grpc"));
    *http.extensions_mut() = extensions;
    http
}

/// A DoGet answer as an HTTP/2 body: each frame's chunks, then the `grpc-status` trailers.
struct Answer {
    frames: BoxStream<Frame>,
    pending: VecDeque<Bytes>,
    done: bool,
}

impl http_body::Body for Answer {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<HttpFrame<Bytes>, Status>>> {
        loop {
            if let Some(chunk) = self.pending.pop_front() {
                return Poll::Ready(Some(Ok(HttpFrame::data(chunk))));
            }
            if self.done {
                return Poll::Ready(None);
            }
            let status = match std::task::ready!(self.frames.poll_next_unpin(cx)) {
                Some(Ok(frame)) => {
                    self.pending.extend(frame.chunks());
                    continue;
                }
                Some(Err(status)) => status,
                None => Status::new(Code::Ok, ""),
            };
            self.done = true;
            let mut trailers = http::HeaderMap::new();
            if status.add_header(&mut trailers).is_err() {
                Status::internal("the error could not be encoded").add_header(&mut trailers).ok();
            }
            return Poll::Ready(Some(Ok(HttpFrame::trailers(trailers))));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.pending.is_empty()
    }
}
