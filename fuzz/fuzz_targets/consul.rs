//! Consul's answers: a body decoded as a node's services (`/v1/catalog/node/:node`, of
//! which the instances of `web` are read) and as a listing of the VIP records
//! (`/v1/kv/…?recurse`), each read as the agent reads it (`sources::consul::read_answer`).
//! Input: a JSON body.
//! Nothing the readers return may break what the kernel maps rely on.

#![no_main]

use std::{collections::BTreeSet, sync::LazyLock};

use libfuzzer_sys::fuzz_target;
use viking_agent::{
    config::{Config, Parsed},
    model::BackendSpec,
    sources::consul::read_answer,
};

/// Default Consul settings (`vip_range` 241.0.0.0/8 by default), a second VIP range of
/// IPv6, and few backends per service so that the limit is reached.
const CONFIG: &str = r#"
[agent]
vip_ranges = ["240.0.0.0/4", "fd00:240::/64"]
[limits]
max_backends_per_service = 4
[consul]
address = "http://127.0.0.1:8500"
"#;

static PARSED: LazyLock<Parsed> = LazyLock::new(|| Config::parse(CONFIG).expect("the fuzz target's config"));

fuzz_target!(|data: &[u8]| {
    let config = &PARSED.config;
    let consul = config.consul.as_ref().expect("a [consul] section");
    let reading = read_answer(data, "web", consul, &config.agent, &config.limits, Some("node-1"));
    if let Some(backends) = &reading.backends {
        assert!(backends.len() <= usize::from(config.limits.max_backends_per_service));
        assert!(backends.windows(2).all(|pair| pair[0].addr < pair[1].addr), "sorted, unique: {backends:?}");
        for BackendSpec { addr, weight } in backends {
            let ip = addr.ip();
            assert!(addr.port() != 0 && !ip.is_unspecified() && !ip.is_multicast(), "{addr}");
            assert!(!config.agent.vip_ranges.contains(ip), "backend {addr} is inside the VIP ranges");
            assert_eq!(ip, ip.to_canonical(), "{addr}: v4-mapped");
            assert!((1..=BackendSpec::MAX_WEIGHT).contains(weight), "{addr} weight {weight}");
        }
    }
    if let Some(service) = &reading.service {
        assert!(consul.vip_range.contains(&service.frontend.vip));
        assert_ne!(service.frontend.port, 0);
        assert!(service.backends.iter().all(|b| b.addr.is_ipv4() == service.frontend.vip.is_ipv4()));
    }
    if let Some(vips) = &reading.vips {
        assert!(vips.values().all(|vip| consul.vip_range.contains(vip)), "{vips:?}");
        assert_eq!(vips.values().collect::<BTreeSet<_>>().len(), vips.len(), "one VIP, one service: {vips:?}");
    }
});
