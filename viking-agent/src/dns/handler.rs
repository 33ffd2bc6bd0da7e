//! The glue between hickory-server and [`Zone::answer`]: checks the request, answers from
//! the latest published [`NameTable`], and sends the response.

use std::sync::Arc;

use hickory_proto::{
    op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode},
    rr::DNSClass,
};
use hickory_server::{
    net::runtime::Time,
    server::{Request, RequestHandler, ResponseHandler, ResponseInfo},
    zone_handler::MessageResponseBuilder,
};
use prometheus_client::metrics::{counter::Counter, family::Family};
use tokio::sync::watch;

use super::{
    answer::{Reply, Zone},
    table::NameTable,
};
use crate::metrics::sources::RcodeLabels;

/// The EDNS version this responder speaks (RFC 6891).
const EDNS_VERSION: u8 = 0;

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
    /// The reply to a request that passed the server's parsing.
    fn reply(&self, request: &Request) -> Reply {
        if request.edns.as_ref().is_some_and(|edns| edns.version() > EDNS_VERSION) {
            return Reply::code(ResponseCode::BADVERS);
        }
        if request.metadata.op_code != OpCode::Query {
            return Reply::code(ResponseCode::NotImp);
        }
        let [query] = request.queries.queries() else {
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
        let reply = self.reply(request);
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
        let mut builder = MessageResponseBuilder::from_message_request(request);
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
