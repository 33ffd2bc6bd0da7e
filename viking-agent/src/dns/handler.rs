//! The glue between hickory-server and [`Zone::answer`]: checks the request, answers from
//! the latest published [`NameTable`], and sends the response.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use hickory_proto::{
    op::{Edns, Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode},
    rr::{DNSClass, Record},
    serialize::binary::{BinDecoder, BinEncoder},
};
use hickory_server::{
    net::{
        NetError,
        runtime::{Time, TokioTime},
        xfer::Protocol,
    },
    server::{Request, RequestHandler, ResponseHandler, ResponseInfo},
    zone_handler::{MessageResponse, MessageResponseBuilder, Queries},
};
use prometheus_client::metrics::{counter::Counter, family::Family};
use tokio::sync::watch;

use super::{
    DnsSettings,
    answer::{Reply, Zone},
    table::NameTable,
};
use crate::metrics::sources::RcodeLabels;

/// The EDNS version this responder speaks (RFC 6891).
const EDNS_VERSION: u8 = 0;
/// Length of a DNS message header (RFC 1035 4.1.1).
const HEADER_LEN: usize = 12;

/// Answers queries for one zone.
#[derive(Debug)]
pub(super) struct Handler {
    /// The zone's settings.
    pub(super) zone: Zone,
    /// The names, replaced by the run loop after each applied change.
    pub(super) names: watch::Receiver<Arc<NameTable>>,
    /// Responses sent, by code.
    pub(super) responses: Family<RcodeLabels, Counter>,
}

impl Handler {
    /// The reply to a request that passed the server's parsing; `echoed`: whether its
    /// question section is echoed (see [`echoes_question`]).
    fn reply(&self, request: &Request, echoed: bool) -> Reply {
        if request.edns.as_ref().is_some_and(|edns| edns.version() > EDNS_VERSION) {
            return Reply::code(ResponseCode::BADVERS);
        }
        if request.metadata.op_code != OpCode::Query {
            return Reply::code(ResponseCode::NotImp);
        }
        let ([query], true) = (request.queries.queries(), echoed) else {
            return Reply::code(ResponseCode::FormErr);
        };
        if !matches!(query.query_class(), DNSClass::IN | DNSClass::ANY) {
            return Reply::code(ResponseCode::Refused);
        }
        // Clone the Arc out: the watch's read lock must not be held while answering.
        let names = Arc::clone(&self.names.borrow());
        self.zone.answer(&names, query.original().name(), query.query_type())
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let echoed = echoes_question(request);
        let reply = self.reply(request, echoed);
        let no_question;
        let mut builder = if echoed {
            MessageResponseBuilder::from_message_request(request)
        } else {
            no_question = Queries::read(&mut BinDecoder::new(&[]), 0).expect("no question to read");
            MessageResponseBuilder::new(&no_question, None)
        };
        self.responses.get_or_create(&RcodeLabels { rcode: format!("{:?}", reply.code) }).inc();
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.response_code = reply.code;
        metadata.authoritative = reply.authoritative;
        // Echo EDNS when asked, so a UDP answer may use the client's buffer size rather
        // than 512 bytes (hickory truncates to it and sets TC).
        let edns = request.edns.as_ref().map(|asked| {
            let mut edns = Edns::new();
            edns.set_max_payload(asked.max_payload().max(512));
            edns.set_version(EDNS_VERSION);
            edns
        });
        if let Some(edns) = &edns {
            builder.edns(edns);
        }
        let response = builder.build(metadata, &reply.answers, &reply.authorities, &[], &reply.additionals);
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(error) => {
                // The client is gone or its TCP connection broke; nothing to retry.
                tracing::debug!(%error, src = %request.src(), "dns: response not sent");
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header { metadata, counts: HeaderCounts::default() })
            }
        }
    }
}

/// Whether the response echoes the question section: hickory copies the section's bytes
/// unchanged after the response's own header, so only a single question that decodes
/// without the client's header is echoed; any other request is answered without it. Found
/// by the fuzz target `dns`:
/// - a name compressed with a pointer into the client's header would not decode in the
///   response, or decode as another name (no client sends one: a pointer leads to an
///   earlier name, and the header holds none);
/// - many questions can exceed 512 bytes, which hickory cannot truncate: it logged an error
///   and sent SERVFAIL instead of FORMERR.
fn echoes_question(request: &Request) -> bool {
    request.queries.queries().len() == 1 && question_stands_alone(request)
}

/// Whether the question section decodes without the client's header.
fn question_stands_alone(request: &Request) -> bool {
    let mut message = request.as_slice().to_vec();
    let Some(header) = message.get_mut(..HEADER_LEN) else { return false };
    // 0xff reads as a pointer to a later byte, which hickory refuses: a name that reaches
    // the header no longer decodes.
    header.fill(0xff);
    let mut decoder = BinDecoder::new(&message);
    decoder.read_slice(HEADER_LEN).is_ok() && Queries::read(&mut decoder, request.queries.queries().len()).is_ok()
}

/// Answers one UDP message as the responder does, without sockets: the entry point of the
/// DNS query parsing, for the fuzz target `dns` (`fuzz/`). hickory decodes the message
/// (`Ok(None)` when the responder would not hand it to the handler: not a DNS message, a
/// response, or a malformed one, which hickory itself answers with FORMERR); the same
/// handler answers it from `names`; the response is encoded as hickory encodes a UDP
/// answer (512 bytes, or the client's EDNS buffer size, truncated beyond). Fails when
/// `settings.domain` is not a DNS name, or when the response cannot be encoded (hickory
/// would send SERVFAIL instead).
pub fn answer_udp_message(
    settings: &DnsSettings,
    names: Arc<NameTable>,
    message: &[u8],
) -> anyhow::Result<Option<Vec<u8>>> {
    let src = SocketAddr::from(([127, 0, 0, 1], 53000));
    let Ok(request) = Request::from_bytes(message.to_vec(), src, Protocol::Udp) else { return Ok(None) };
    if request.metadata.message_type == MessageType::Response {
        return Ok(None);
    }
    let zone = Zone::new(&settings.domain, settings.ttl)?;
    let (_publisher, names) = watch::channel(names);
    let handler = Handler { zone, names, responses: Family::default() };
    let sent = EncodedResponse::default();
    // Nothing in the handler waits: the future is ready at its first poll.
    let future = handler.handle_request::<_, TokioTime>(&request, sent.clone());
    futures_util::FutureExt::now_or_never(future).ok_or_else(|| anyhow::anyhow!("the DNS handler waited"))?;
    let encoded = sent.0.lock().expect("not poisoned").take();
    encoded.ok_or_else(|| anyhow::anyhow!("the DNS handler sent no response"))?.map(Some).map_err(anyhow::Error::from)
}

/// A response as encoded for the wire, or why it could not be.
type Encoded = Result<Vec<u8>, NetError>;

/// A response handler that keeps the encoded response instead of sending it.
#[derive(Clone, Debug, Default)]
struct EncodedResponse(Arc<Mutex<Option<Encoded>>>);

#[async_trait::async_trait]
impl ResponseHandler for EncodedResponse {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        // As hickory's own UDP response handle encodes it.
        let max_size = response.edns().map_or(512, Edns::max_payload);
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(max_size);
        let emitted = response.destructive_emit(&mut encoder).map_err(NetError::from);
        *self.0.lock().expect("not poisoned") = Some(emitted.clone().map(|_| bytes));
        emitted
    }
}
