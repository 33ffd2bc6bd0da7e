//! The TOML config file: `Config::parse`, what `viking-agent run`, `reload` and `check` use.
//! Input: a config file. Beyond not panicking, every service it accepts must be one the
//! kernel may get (the checks `config::service` promises), and with `[dns]` the responder
//! must answer for its name under the domain accepted.

#![no_main]

use std::sync::Arc;

use hickory_proto::{
    op::{Message, Query, ResponseCode},
    rr::{Name, RecordType},
};
use libfuzzer_sys::fuzz_target;
use viking_agent::{
    config::{Config, Parsed},
    dns::{NameTable, answer_udp_message},
    model::{BackendSpec, Protocol},
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(Parsed { config, errors }) = Config::parse(text) else { return };
    let agent = &config.agent;
    for service in config.services.services.values() {
        let name = &service.name;
        assert!((1..=63).contains(&name.len()), "{name:?}: not a DNS label");
        assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{name:?}");
        let vip = service.frontend.vip;
        assert_eq!(vip, vip.to_canonical(), "{name}: a v4-mapped VIP is kept as IPv4");
        assert!(agent.vip_ranges.contains(vip), "{name}: VIP {vip} outside the VIP ranges");
        assert_ne!(service.frontend.port, 0, "{name}");
        assert_ne!(config.docker.as_ref().map(|docker| docker.ambassador), Some(vip), "{name}: VIP is the ambassador");
        assert!(service.backends.len() <= usize::from(config.limits.max_backends_per_service), "{name}");
        for (i, BackendSpec { addr, weight }) in service.backends.iter().enumerate() {
            assert!(addr.port() != 0 && !addr.ip().is_unspecified() && !addr.ip().is_multicast(), "{name}: {addr}");
            assert!(!agent.vip_ranges.contains(addr.ip()), "{name}: backend {addr} is inside the VIP ranges");
            assert_eq!(addr.is_ipv4(), vip.is_ipv4(), "{name}: backend {addr} of another family than {vip}");
            assert!((1..=BackendSpec::MAX_WEIGHT).contains(weight), "{name}: {addr} weight {weight}");
            assert!(service.backends[..i].iter().all(|b| b.addr != *addr), "{name}: {addr} twice");
        }
    }
    if let Some(consul) = &config.consul {
        assert!(agent.vip_ranges.contains_net(&consul.vip_range));
    }
    if let Some(dns) = &config.dns {
        let names = Arc::new(NameTable::from_state(&config.services));
        for service in config.services.services.values().take(4) {
            let protocol = match service.frontend.protocol {
                Protocol::Tcp => "_tcp",
                Protocol::Udp => "_udp",
            };
            let srv = format!("_{}.{protocol}.service.{}.", service.name, dns.domain);
            let name = Name::from_ascii(&srv).unwrap_or_else(|err| panic!("{srv:?}: {err}"));
            let mut query = Message::query();
            query.add_query(Query::query(name, RecordType::SRV));
            let query = query.to_vec().expect("a query");
            let response = answer_udp_message(dns, Arc::clone(&names), &query)
                .unwrap_or_else(|err| panic!("{srv}: {err:#}"))
                .expect("a response");
            let response = Message::from_vec(&response).expect("the response decodes");
            assert_eq!(response.metadata.response_code, ResponseCode::NoError, "{srv}");
            // A long name may not fit 512 bytes: then the client asks again over TCP.
            assert!(!response.answers.is_empty() || response.metadata.truncation, "{srv}: no SRV record");
        }
    }
    // What `viking-agent check` prints.
    for error in &errors {
        let _ = error.to_string();
    }
});
