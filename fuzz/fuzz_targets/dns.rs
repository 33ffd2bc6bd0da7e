//! The DNS responder: a raw UDP message decoded by hickory and answered by the agent's
//! handler (`dns::answer_udp_message`) from a table of a few services. Input: a DNS
//! message. The response must be a DNS message that answers the query.

#![no_main]

use std::sync::{Arc, LazyLock};

use hickory_proto::op::{Message, MessageType};
use libfuzzer_sys::fuzz_target;
use viking_agent::{
    config::DnsSettings,
    dns::{NameTable, answer_udp_message},
    model::{Frontend, Protocol},
};

static TABLE: LazyLock<Arc<NameTable>> = LazyLock::new(|| {
    let mut table = NameTable::default();
    for (name, vip, port, protocol) in [
        ("web", "240.0.0.10", 80, Protocol::Tcp),
        ("web", "240.0.0.10", 443, Protocol::Tcp),
        ("dns", "::ffff:240.0.0.53", 53, Protocol::Udp),
        ("v6", "fd00::10", 8080, Protocol::Tcp),
        ("Mixed_Case-1", "240.0.0.11", 9000, Protocol::Udp),
    ] {
        let vip = vip.parse().expect("a VIP");
        table.set(Frontend { vip, port, protocol }, Some(&name.into()));
    }
    Arc::new(table)
});

fuzz_target!(|data: &[u8]| {
    let settings = DnsSettings { listen: Vec::new(), domain: "viking".into(), ttl: 5 };
    let response = match answer_udp_message(&settings, Arc::clone(&TABLE), data) {
        Ok(Some(response)) => response,
        Ok(None) => return,
        Err(err) => panic!("no response: {err:#}"),
    };
    let response = Message::from_vec(&response).expect("the response decodes");
    assert_eq!(response.metadata.id, u16::from_be_bytes([data[0], data[1]]));
    assert_eq!(response.metadata.message_type, MessageType::Response);
    if let [question] = response.queries.as_slice() {
        assert!(response.answers.iter().all(|answer| answer.name == *question.name()), "{response:?}");
    }
});
