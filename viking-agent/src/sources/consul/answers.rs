//! One Consul answer read without I/O, as the agent reads it: the entry point of the Consul
//! answer parsers, for the fuzz target `consul` (`fuzz/`). The body is decoded as each
//! answer the readers take — a node's services (`/v1/catalog/node/:node`), a listing of
//! the VIP records — and whatever decodes goes through the same readers as in the agent:
//! the node view, then one service's instances.

use std::{collections::BTreeMap, net::IpAddr};

use super::{
    client::decode,
    instances::{self, ReadContext},
    nodes::NodeView,
    problems::ConsulProblem,
    vips::{self, Keys, VipTable},
    wire::{KvEntry, NodeServices},
};
use crate::{
    config::{AgentSettings, ConsulSettings},
    model::{BackendSpec, Limits, Service},
};

/// What the agent makes of one answer body.
#[derive(Debug, Default)]
pub struct AnswerReading {
    /// As `GET /v1/catalog/node/:node`, when the body decodes as one (every check
    /// passing): the usable backends of the service read.
    pub backends: Option<Vec<BackendSpec>>,
    /// The service those instances make, with the first VIP candidate of its name, when
    /// they declare a usable shape.
    pub service: Option<Service>,
    /// As a listing of `<kv_prefix>/services/`, when the body decodes as one: the VIP of
    /// each service.
    pub vips: Option<BTreeMap<String, IpAddr>>,
    /// Every problem the readers reported (skipped instances, ignored records).
    pub problems: Vec<ConsulProblem>,
}

/// Reads `body` as a node's services, of which the instances of `service` are read, and as
/// a listing of the VIP records. `local_node` is this host's Consul node (loopback
/// instances on it are local).
pub fn read_answer(
    body: &[u8],
    service: &str,
    consul: &ConsulSettings,
    agent: &AgentSettings,
    limits: &Limits,
    local_node: Option<&str>,
) -> AnswerReading {
    let mut reading = AnswerReading::default();
    if let Ok(answer) = decode::<Option<NodeServices>>(body) {
        // The node's name as the node list gives it; the answer may name another.
        let node = answer.as_ref().map_or_else(|| "absent".to_owned(), |a| a.node.node.clone());
        let mut view = NodeView::default();
        view.add(&node);
        view.set_services(&node, answer);
        view.set_checks(&node, &[]);
        let entries = view.passing(service);
        let context =
            ReadContext { vip_ranges: &agent.vip_ranges, max_backends: limits.max_backends_per_service, local_node };
        let mut read = instances::read(service, &entries, &context);
        reading.problems.append(&mut read.problems);
        if let Some(shape) = &read.shape {
            let vip = vips::candidate(consul.vip_range, service, 0);
            let (built, problem) = instances::service(service.into(), vip, shape, &read.backends);
            reading.problems.extend(problem);
            reading.service = Some(built);
        }
        reading.backends = Some(read.backends);
    }
    if let Ok(entries) = decode::<Vec<KvEntry>>(body) {
        let keys = Keys::new(&consul.kv_prefix);
        let mut table = VipTable::default();
        let (mut problems, changed) = table.load(&keys, &entries, consul.vip_range, 0, |name: &str| name.into());
        reading.problems.append(&mut problems);
        let vips =
            changed.into_iter().filter_map(|name| Some((table.get(&name)?.vip, name))).map(|(vip, name)| (name, vip));
        reading.vips = Some(vips.collect());
    }
    reading
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const CONFIG: &str = "[limits]\nmax_backends_per_service = 4\n[consul]\naddress = \"http://127.0.0.1:8500\"\n";

    fn read(body: &str) -> AnswerReading {
        let config = Config::parse(CONFIG).unwrap().config;
        let consul = config.consul.as_ref().unwrap();
        read_answer(body.as_bytes(), "web", consul, &config.agent, &config.limits, Some("node-1"))
    }

    #[test]
    fn a_node_answer_is_read_into_backends_and_a_service() {
        let reading = read(
            r#"{"Node":{"Node":"node-1","Address":"10.0.0.1"},"Services":{
            "web-1":{"ID":"web-1","Service":"web","Address":"","Port":8080,"Meta":{"viking_port":"80"},
              "Weights":{"Passing":3,"Warning":1}},
            "web-2":{"ID":"web-2","Service":"web","Address":"web.local","Port":8081,"Meta":{"viking_port":"80"}},
            "db-1":{"ID":"db-1","Service":"db","Address":"10.0.0.9","Port":5432}}}"#,
        );
        let backends = reading.backends.unwrap();
        assert_eq!((backends.len(), backends[0].weight), (1, 3), "web's two instances, one not an IP address");
        let service = reading.service.unwrap();
        assert_eq!((service.frontend.port, service.backends.len()), (80, 1));
        assert_eq!(reading.problems.len(), 1, "{:?}", reading.problems);
        assert!(reading.vips.is_none(), "not a KV listing");
        assert_eq!(read("null").backends, Some(Vec::new()), "a node that does not exist serves nothing");
    }

    #[test]
    fn a_kv_listing_is_read_into_vips() {
        let reading = read(
            r#"[{"Key":"viking/services/web","Value":"MjQxLjAuMC43","ModifyIndex":10},
            {"Key":"viking/services/bad","Value":"MTAuMC4wLjE=","ModifyIndex":11}]"#,
        );
        let vips = reading.vips.unwrap();
        assert_eq!(vips.into_iter().collect::<Vec<_>>(), [("web".to_owned(), "241.0.0.7".parse().unwrap())]);
        assert_eq!(reading.problems.len(), 1, "{:?}", reading.problems);
        assert!(reading.backends.is_none(), "not a health answer");
    }
}
