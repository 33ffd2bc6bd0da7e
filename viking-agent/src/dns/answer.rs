//! What to answer for one question: pure, from the zone settings and a [`NameTable`], so
//! the rules can be tested without sockets.
//!
//! The zone is `<domain>`; service names live under `service.<domain>`:
//! - `<name>.service.<domain>`: `A` (IPv4 VIP) / `AAAA` (IPv6 VIP); another type is NODATA.
//! - `_<name>._<tcp|udp>.service.<domain>`: `SRV`, one per port of that protocol, target
//!   `<name>.service.<domain>`, its addresses in the additional section (RFC 2782 form, as
//!   Consul answers it and as Go's `LookupSRV` and Java's JNDI ask it).
//! - `<domain>`, `service.<domain>`, `_tcp.service.<domain>` (while some service has a TCP
//!   frontend; likewise `_udp`): exist without data, NODATA. `SOA` at `<domain>`.
//! - Anything else under `<domain>`: NXDOMAIN, with the SOA so resolvers cache the negative
//!   answer for the TTL only (RFC 2308).
//! - Names outside `<domain>`: REFUSED. The responder is authoritative for its domain only
//!   and does not recurse; REFUSED makes a stub resolver try its next server, whereas
//!   NXDOMAIN would claim the name does not exist and be cached.

use std::net::IpAddr;

use hickory_proto::{
    ProtoError,
    op::ResponseCode,
    rr::{
        LowerName, Name, RData, Record, RecordType,
        rdata::{A, AAAA, SOA, SRV},
    },
};

use super::table::{NameEntry, NameTable};
use crate::model::Protocol;

/// SOA timers. Nothing transfers this zone, so only `minimum` (the negative-caching TTL,
/// set to the zone's TTL) matters; these are conventional values.
const SOA_REFRESH: i32 = 3600;
const SOA_RETRY: i32 = 600;
const SOA_EXPIRE: i32 = 86400;

/// The zone the responder is authoritative for.
#[derive(Debug)]
pub(super) struct Zone {
    /// `<domain>.`
    apex: LowerName,
    /// `service.<domain>.`
    services: LowerName,
    /// TTL of every record.
    ttl: u32,
    /// The zone's SOA, for `SOA` questions and negative answers.
    soa: Record,
}

/// The answer to one question.
#[derive(Debug, PartialEq)]
pub(super) struct Reply {
    /// The response code.
    pub(super) code: ResponseCode,
    /// Whether the name is in the zone (the AA bit).
    pub(super) authoritative: bool,
    /// Answer section.
    pub(super) answers: Vec<Record>,
    /// Authority section: the SOA of a negative answer.
    pub(super) authorities: Vec<Record>,
    /// Additional section: addresses of SRV targets.
    pub(super) additionals: Vec<Record>,
}

impl Reply {
    /// An answer with no records: an error, or a refusal.
    pub(super) fn code(code: ResponseCode) -> Self {
        Self { code, authoritative: false, answers: Vec::new(), authorities: Vec::new(), additionals: Vec::new() }
    }
}

/// What a name in the zone holds for the question.
enum Found {
    Records { answers: Vec<Record>, additionals: Vec<Record> },
    NoData,
    NxDomain,
}

impl Zone {
    /// The zone of `domain` (validated, lower-case, no final dot).
    pub(super) fn new(domain: &str, ttl: u32) -> Result<Self, ProtoError> {
        let apex = Name::from_ascii(format!("{domain}."))?;
        let services = Name::from_ascii("service")?.append_domain(&apex)?;
        let soa = SOA::new(
            apex.clone(),
            Name::from_ascii("hostmaster")?.append_domain(&apex)?,
            1,
            SOA_REFRESH,
            SOA_RETRY,
            SOA_EXPIRE,
            ttl,
        );
        let soa = Record::from_rdata(apex.clone(), ttl, RData::SOA(soa));
        Ok(Self { apex: apex.into(), services: services.into(), ttl, soa })
    }

    /// The reply to a question for `name` and `qtype`. Records carry `name` as asked (case
    /// kept), as resolvers expect.
    pub(super) fn answer(&self, table: &NameTable, name: &Name, qtype: RecordType) -> Reply {
        let lower = LowerName::from(name);
        if !self.apex.zone_of(&lower) {
            return Reply::code(ResponseCode::Refused);
        }
        let (code, answers, authorities, additionals) = match self.find(table, &lower, name, qtype) {
            Found::Records { answers, additionals } => (ResponseCode::NoError, answers, Vec::new(), additionals),
            Found::NoData => (ResponseCode::NoError, Vec::new(), vec![self.soa.clone()], Vec::new()),
            Found::NxDomain => (ResponseCode::NXDomain, Vec::new(), vec![self.soa.clone()], Vec::new()),
        };
        Reply { code, authoritative: true, answers, authorities, additionals }
    }

    fn find(&self, table: &NameTable, lower: &LowerName, name: &Name, qtype: RecordType) -> Found {
        if !self.services.zone_of(lower) {
            if *lower != self.apex {
                return Found::NxDomain;
            }
            return match qtype {
                RecordType::SOA | RecordType::ANY => {
                    Found::Records { answers: vec![self.soa.clone()], additionals: Vec::new() }
                }
                _ => Found::NoData,
            };
        }
        // The labels left of `service.<domain>`, leftmost first; LowerName has lower-cased them.
        let depth = lower.iter().count() - self.services.iter().count();
        let labels: Option<Vec<&str>> = lower.iter().take(depth).map(|label| std::str::from_utf8(label).ok()).collect();
        let Some(labels) = labels else {
            return Found::NxDomain;
        };
        match labels[..] {
            [] => Found::NoData,
            [service] => match table.get(service) {
                Some(entry) => self.addresses(entry, name, qtype),
                None if protocol_label(service).is_some_and(|p| table.has_protocol(p)) => Found::NoData,
                None => Found::NxDomain,
            },
            [service, protocol] => {
                let entry = service.strip_prefix('_').and_then(|service| Some((service, table.get(service)?)));
                match (entry, protocol_label(protocol)) {
                    (Some((service, entry)), Some(protocol)) => self.srv(service, entry, protocol, name, qtype),
                    _ => Found::NxDomain,
                }
            }
            _ => Found::NxDomain,
        }
    }

    /// `A`/`AAAA` records of a service for `owner`.
    fn addresses(&self, entry: &NameEntry, owner: &Name, qtype: RecordType) -> Found {
        let answers: Vec<Record> = entry
            .vips()
            .into_iter()
            .filter_map(|vip| match (vip, qtype) {
                (IpAddr::V4(v4), RecordType::A | RecordType::ANY) => Some(RData::A(A(v4))),
                (IpAddr::V6(v6), RecordType::AAAA | RecordType::ANY) => Some(RData::AAAA(AAAA(v6))),
                _ => None,
            })
            .map(|rdata| Record::from_rdata(owner.clone(), self.ttl, rdata))
            .collect();
        if answers.is_empty() { Found::NoData } else { Found::Records { answers, additionals: Vec::new() } }
    }

    /// `SRV` records, one per port of `protocol`, pointing at the service's name.
    fn srv(&self, service: &str, entry: &NameEntry, protocol: Protocol, owner: &Name, qtype: RecordType) -> Found {
        let ports: Vec<u16> = entry.ports().into_iter().filter(|(p, _)| *p == protocol).map(|(_, port)| port).collect();
        // Service names passed `config::check_name`, so they are single labels of at most
        // 63 bytes and the target is always a valid name.
        let target = Name::from_labels([service.as_bytes()]).and_then(|n| n.append_domain(&self.services));
        let (false, Ok(target)) = (ports.is_empty(), target) else {
            return Found::NxDomain;
        };
        if !matches!(qtype, RecordType::SRV | RecordType::ANY) {
            return Found::NoData;
        }
        let answers = ports
            .iter()
            .map(|port| Record::from_rdata(owner.clone(), self.ttl, RData::SRV(SRV::new(0, 0, *port, target.clone()))))
            .collect();
        let additionals = match self.addresses(entry, &target, RecordType::ANY) {
            Found::Records { answers, .. } => answers,
            Found::NoData | Found::NxDomain => Vec::new(),
        };
        Found::Records { answers, additionals }
    }
}

/// The protocol of an SRV protocol label (`_tcp`, `_udp`).
fn protocol_label(label: &str) -> Option<Protocol> {
    match label {
        "_tcp" => Some(Protocol::Tcp),
        "_udp" => Some(Protocol::Udp),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::tests::state;

    fn zone() -> Zone {
        Zone::new("viking", 5).unwrap()
    }

    fn table() -> NameTable {
        NameTable::from_state(&state(&[
            ("web", "240.0.0.10", 80, Protocol::Tcp),
            ("web", "240.0.0.10", 443, Protocol::Tcp),
            ("v6", "fd00::10", 80, Protocol::Tcp),
        ]))
    }

    fn ask(name: &str, qtype: RecordType) -> Reply {
        zone().answer(&table(), &Name::from_ascii(name).unwrap(), qtype)
    }

    fn rdata(records: &[Record]) -> Vec<String> {
        records.iter().map(|r| r.data.to_string()).collect()
    }

    #[test]
    fn addresses_by_family() {
        let a = ask("WEB.service.viking.", RecordType::A);
        assert_eq!((a.code, a.authoritative), (ResponseCode::NoError, true));
        assert_eq!(rdata(&a.answers), ["240.0.0.10"]);
        assert_eq!(a.answers[0].name.to_string(), "WEB.service.viking.", "owner as asked");
        assert_eq!(a.answers[0].ttl, 5);
        assert_eq!(rdata(&ask("v6.service.viking.", RecordType::AAAA).answers), ["fd00::10"]);
        let nodata = ask("web.service.viking.", RecordType::AAAA);
        assert_eq!((nodata.code, nodata.answers.len()), (ResponseCode::NoError, 0));
        assert_eq!(nodata.authorities[0].record_type(), RecordType::SOA);
    }

    #[test]
    fn unknown_names_inside_are_nxdomain_and_outside_refused() {
        for name in ["db.service.viking.", "web.viking.", "x.web.service.viking.", "_web._sctp.service.viking."] {
            let reply = ask(name, RecordType::A);
            assert_eq!(reply.code, ResponseCode::NXDomain, "{name}");
            assert_eq!(reply.authorities[0].record_type(), RecordType::SOA, "{name}: negative answers carry the SOA");
        }
        for name in ["viking.", "service.viking.", "_tcp.service.viking."] {
            let reply = ask(name, RecordType::A);
            assert_eq!((reply.code, reply.answers.len()), (ResponseCode::NoError, 0), "{name} exists, without data");
        }
        assert_eq!(ask("_udp.service.viking.", RecordType::A).code, ResponseCode::NXDomain, "no UDP service");
        assert_eq!(rdata(&ask("viking.", RecordType::SOA).answers), ["viking. hostmaster.viking. 1 3600 600 86400 5"]);
        let outside = ask("example.com.", RecordType::A);
        assert_eq!(outside, Reply::code(ResponseCode::Refused));
        assert_eq!(ask("vikings.", RecordType::A).code, ResponseCode::Refused);
    }

    #[test]
    fn srv_lists_the_ports_of_a_protocol() {
        let reply = ask("_web._tcp.service.viking.", RecordType::SRV);
        assert_eq!(rdata(&reply.answers), ["0 0 80 web.service.viking.", "0 0 443 web.service.viking."]);
        assert_eq!(rdata(&reply.additionals), ["240.0.0.10"]);
        assert_eq!(ask("_web._udp.service.viking.", RecordType::SRV).code, ResponseCode::NXDomain);
        assert_eq!(ask("_web._tcp.service.viking.", RecordType::A).answers.len(), 0);
    }
}
