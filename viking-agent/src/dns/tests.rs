//! The responder over real sockets on 127.0.0.1: UDP and TCP, answers parsed by
//! hickory-proto as a client would, and a table update served without a restart.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use hickory_proto::{
    op::{Edns, Message, Query, ResponseCode},
    rr::{Name, RData, RecordType},
};
use prometheus_client::metrics::family::Family;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpStream, UdpSocket},
    sync::watch,
};
use viking_common::Algorithm;

use super::{DnsError, DnsServer, NameTable};
use crate::{
    config::DnsSettings,
    model::{DesiredState, Frontend, Protocol, Service},
};

/// Every exchange is bounded: a lost answer fails the test instead of hanging it.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);

/// A desired state with `(name, vip, port, protocol)` services and no backends.
pub(super) fn state(services: &[(&str, &str, u16, Protocol)]) -> DesiredState {
    let mut state = DesiredState::default();
    for (name, vip, port, protocol) in services {
        let frontend = Frontend { vip: vip.parse().expect("test VIP"), port: *port, protocol: *protocol };
        let service = Service {
            name: (*name).into(),
            frontend,
            algorithm: Algorithm::RoundRobin,
            affinity_secs: 0,
            outlier: crate::model::OutlierDetection::default(),
            backends: Vec::new(),
        };
        state.insert(service);
    }
    state
}

/// Responses counted by code.
type Responses = Family<crate::metrics::sources::RcodeLabels, prometheus_client::metrics::counter::Counter>;

/// A responder on a free port of 127.0.0.1 serving `table`; the sender publishes updates.
async fn start(table: NameTable) -> (SocketAddr, watch::Sender<Arc<NameTable>>, Responses) {
    let (tx, rx) = watch::channel(Arc::new(table));
    let settings = DnsSettings { listen: vec!["127.0.0.1:0".parse().unwrap()], domain: "viking".into(), ttl: 5 };
    let responses = Responses::default();
    let server = DnsServer::bind(&settings, rx, responses.clone()).await.expect("bind on 127.0.0.1");
    let addr = server.local_addrs()[0];
    tokio::spawn(server.run());
    (addr, tx, responses)
}

fn query(name: &str, qtype: RecordType, id: u16) -> Vec<u8> {
    let mut message = Message::query();
    message.metadata.id = id;
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    message.set_edns(Edns::new());
    message.to_vec().unwrap()
}

async fn ask_udp(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(&query(name, qtype, 0x5151), server).await.unwrap();
    let mut buf = vec![0; 4096];
    let (len, from) =
        tokio::time::timeout(EXCHANGE_TIMEOUT, socket.recv_from(&mut buf)).await.expect("UDP answer").unwrap();
    assert_eq!(from, server);
    let answer = Message::from_vec(&buf[..len]).unwrap();
    assert_eq!(answer.metadata.id, 0x5151);
    answer
}

async fn ask_tcp(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let exchange = async {
        let mut stream = TcpStream::connect(server).await.unwrap();
        // DNS over TCP: each message is preceded by its length (RFC 1035 4.2.2).
        let message = query(name, qtype, 0x7c7c);
        stream.write_all(&u16::try_from(message.len()).unwrap().to_be_bytes()).await.unwrap();
        stream.write_all(&message).await.unwrap();
        let len = stream.read_u16().await.unwrap();
        let mut buf = vec![0; usize::from(len)];
        stream.read_exact(&mut buf).await.unwrap();
        buf
    };
    let buf = tokio::time::timeout(EXCHANGE_TIMEOUT, exchange).await.expect("TCP answer");
    let answer = Message::from_vec(&buf).unwrap();
    assert_eq!(answer.metadata.id, 0x7c7c);
    answer
}

/// The addresses in the answer section, as text.
fn addresses(answer: &Message) -> Vec<String> {
    answer
        .answers
        .iter()
        .map(|record| match &record.data {
            RData::A(a) => a.to_string(),
            RData::AAAA(aaaa) => aaaa.to_string(),
            other => panic!("not an address: {other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn answers_over_udp_and_tcp() {
    let table = NameTable::from_state(&state(&[
        ("web", "240.0.0.10", 80, Protocol::Tcp),
        ("v6", "fd00::10", 53, Protocol::Udp),
    ]));
    let (server, _tx, responses) = start(table).await;
    for tcp in [false, true] {
        let ask = async |name: &str, qtype| {
            if tcp { ask_tcp(server, name, qtype).await } else { ask_udp(server, name, qtype).await }
        };
        let a = ask("web.service.viking.", RecordType::A).await;
        assert_eq!(a.metadata.response_code, ResponseCode::NoError, "tcp={tcp}");
        assert!(a.metadata.authoritative);
        assert_eq!(addresses(&a), ["240.0.0.10"], "tcp={tcp}");
        assert_eq!(a.answers[0].ttl, 5);
        assert!(a.edns.is_some(), "EDNS is echoed");
        let aaaa = ask("V6.Service.Viking.", RecordType::AAAA).await;
        assert_eq!(addresses(&aaaa), ["fd00::10"], "tcp={tcp}: case-insensitive");
        let nodata = ask("web.service.viking.", RecordType::AAAA).await;
        assert_eq!((nodata.metadata.response_code, nodata.answers.len()), (ResponseCode::NoError, 0));
        let nx = ask("db.service.viking.", RecordType::A).await;
        assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain, "tcp={tcp}");
        assert_eq!(nx.authorities[0].record_type(), RecordType::SOA);
        let refused = ask("example.com.", RecordType::A).await;
        assert_eq!(refused.metadata.response_code, ResponseCode::Refused, "tcp={tcp}");
        assert!(!refused.metadata.authoritative);
        let srv = ask("_v6._udp.service.viking.", RecordType::SRV).await;
        let RData::SRV(record) = &srv.answers[0].data else { panic!("not SRV: {srv:?}") };
        assert_eq!((record.port, record.target.to_string().as_str()), (53, "v6.service.viking."));
    }
    let count =
        |rcode: &str| responses.get_or_create(&crate::metrics::sources::RcodeLabels { rcode: rcode.into() }).get();
    assert_eq!((count("NoError"), count("NXDomain"), count("Refused")), (8, 2, 2), "counted by code, UDP and TCP");
}

#[tokio::test]
async fn serves_the_table_published_last() {
    let (server, tx, _) = start(NameTable::from_state(&state(&[("web", "240.0.0.10", 80, Protocol::Tcp)]))).await;
    assert_eq!(
        ask_udp(server, "db.service.viking.", RecordType::A).await.metadata.response_code,
        ResponseCode::NXDomain
    );
    tx.send_replace(Arc::new(NameTable::from_state(&state(&[("db", "240.0.0.20", 5432, Protocol::Tcp)]))));
    assert_eq!(addresses(&ask_udp(server, "db.service.viking.", RecordType::A).await), ["240.0.0.20"]);
    assert_eq!(addresses(&ask_tcp(server, "db.service.viking.", RecordType::A).await), ["240.0.0.20"]);
    let gone = ask_tcp(server, "web.service.viking.", RecordType::A).await;
    assert_eq!(gone.metadata.response_code, ResponseCode::NXDomain, "a removed service stops resolving");
}

#[tokio::test]
async fn a_taken_address_is_named() {
    let taken = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = taken.local_addr().unwrap();
    let settings = DnsSettings { listen: vec![addr], domain: "viking".into(), ttl: 5 };
    let (_tx, rx) = watch::channel(Arc::new(NameTable::default()));
    let err = DnsServer::bind(&settings, rx, Responses::default()).await.unwrap_err();
    assert!(matches!(err, DnsError::BindUdp { listen, .. } if listen == addr), "{err:?}");
    assert_eq!(err.to_string(), format!("dns: binding UDP {addr} (`dns.listen`)"));
}

#[test]
fn a_message_is_answered_without_sockets_as_over_udp() {
    let table = NameTable::from_state(&state(&[("web", "240.0.0.10", 80, Protocol::Tcp)]));
    let settings = DnsSettings { listen: Vec::new(), domain: "viking".into(), ttl: 5 };
    let answer = |message: &[u8]| super::answer_udp_message(&settings, Arc::new(table.clone()), message).unwrap();
    let response = answer(&query("Web.Service.Viking.", RecordType::A, 0x0a0b)).expect("a response");
    let response = Message::from_vec(&response).unwrap();
    assert_eq!((response.metadata.id, addresses(&response)), (0x0a0b, vec!["240.0.0.10".to_owned()]));
    assert_eq!(answer(b"\x0a\x0b"), None, "not a DNS message: hickory drops it");
    let mut reply = query("web.service.viking.", RecordType::A, 1);
    reply[2] |= 0x80;
    assert_eq!(answer(&reply), None, "a response is never answered");
}

/// Found by the fuzz target `dns`: a question name compressed with a pointer into the header
/// (here to the flags byte, which reads as a 1-byte label in the query). hickory echoes the
/// question's bytes after the response's own header, where the pointer meets the flags
/// `0x81` instead: the response did not decode.
#[test]
fn a_question_pointing_into_the_header_gets_formerr_without_the_question() {
    let query = [0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 2, 0, 1, 0, 1];
    assert!(Message::from_vec(&query).is_ok(), "hickory decodes the query");
    let settings = DnsSettings { listen: Vec::new(), domain: "viking".into(), ttl: 5 };
    let response = super::answer_udp_message(&settings, Arc::new(NameTable::default()), &query).unwrap().unwrap();
    let response = Message::from_vec(&response).expect("the response decodes");
    assert_eq!((response.metadata.id, response.metadata.response_code), (1, ResponseCode::FormErr));
    assert!(response.queries.is_empty(), "{response:?}");
}

/// Found by the fuzz target `dns`: 16 questions, over 512 bytes of them, without EDNS. hickory
/// echoed them all, which cannot fit 512 bytes nor be truncated: it could not encode the
/// FORMERR, logged an error and would have sent SERVFAIL.
#[test]
fn many_questions_get_formerr_without_the_questions() {
    let mut message = Message::query();
    message.metadata.id = 0x0c0c;
    for i in 0..16 {
        let name = format!("{}{i}.{}{i}.", "q".repeat(20), "x".repeat(10));
        message.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    }
    let query = message.to_vec().unwrap();
    assert!(query.len() > 512, "{} bytes", query.len());
    let settings = DnsSettings { listen: Vec::new(), domain: "viking".into(), ttl: 5 };
    let response = super::answer_udp_message(&settings, Arc::new(NameTable::default()), &query)
        .expect("the response is encoded")
        .expect("a response");
    let response = Message::from_vec(&response).expect("the response decodes");
    assert_eq!((response.metadata.id, response.metadata.response_code), (0x0c0c, ResponseCode::FormErr));
    assert!(response.queries.is_empty(), "{response:?}");
}
