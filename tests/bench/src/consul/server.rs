//! The Consul side of the benchmark: the in-repo test server on a runtime of its own (the
//! tests' [`TestConsul`]: its threads are named, so their CPU time is the server's), the
//! services registered in it, and a registrar that makes changes over HTTP(S) the way a
//! deploy does.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use consul_test_server::{CheckSpec, ConsulTestServer, Options, Registration, Status};
use viking_tests::consul::TestConsul;

use crate::cpu::{stat_cpu_ticks, ticks_to_duration};

use super::INSTANCES;

/// The logical port of every benchmark service (the instances' common port).
pub const PORT: u16 = 8080;

/// How the agent talks to Consul.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// HTTPS: HTTP/2, many blocking queries per connection (Consul's HTTPS API).
    Https,
    /// Plain HTTP/1.1: one connection per outstanding request.
    Http,
}

impl Transport {
    /// As written in the report.
    pub fn name(self) -> &'static str {
        match self {
            Self::Https => "HTTPS (HTTP/2)",
            Self::Http => "HTTP/1.1",
        }
    }

    /// As written on the command line (`--only https:10000`).
    pub fn name_short(self) -> &'static str {
        match self {
            Self::Https => "https",
            Self::Http => "http",
        }
    }
}

/// A running test server holding the benchmark's services.
#[derive(Debug)]
pub struct Consul {
    consul: TestConsul,
    http: reqwest::Client,
    ca_file: Option<PathBuf>,
}

impl Consul {
    /// Starts a server (`transport` decides TLS); `work_dir` gets its certificate.
    pub fn start(transport: Transport, work_dir: &Path) -> anyhow::Result<Self> {
        let options = Options { tls: transport == Transport::Https, ..Options::default() };
        let consul = TestConsul::launch(options)?;
        let mut http = reqwest::Client::builder();
        let mut ca_file = None;
        if let Some(pem) = consul.server.ca_pem() {
            let path = work_dir.join("viking-bench-consul-ca.pem");
            std::fs::write(&path, &pem)?;
            http = http.add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes())?);
            ca_file = Some(path);
        }
        Ok(Self { consul, http: http.build()?, ca_file })
    }

    /// The server.
    pub fn server(&self) -> &ConsulTestServer {
        &self.consul.server
    }

    /// The agent's `[consul]` section for this server.
    pub fn config_section(&self) -> String {
        let mut section = format!("[consul]\naddress = {:?}\n", self.server().http_addr());
        if let Some(ca) = &self.ca_file {
            section.push_str(&format!("ca_cert = {:?}\n", ca.display().to_string()));
        }
        section
    }

    /// Registers `instance` over HTTP(S) with `PUT /v1/catalog/register`, as a deploy
    /// would; returns when Consul has answered.
    pub fn register_over_http(&self, instance: &Instance) -> anyhow::Result<()> {
        let url = format!("{}/v1/catalog/register", self.server().http_addr());
        let body = instance.register_body();
        self.consul.block_on(async {
            let response = self.http.put(&url).json(&body).send().await?;
            if !response.status().is_success() {
                bail!("register {}: {}", instance.id(), response.status());
            }
            Ok(())
        })
    }

    /// `GET path` over HTTP(S): the answer's size and how long it took, whole.
    pub fn fetch(&self, path: &str) -> anyhow::Result<(usize, Duration)> {
        let url = format!("{}{path}", self.server().http_addr());
        self.consul.block_on(async {
            let started = Instant::now();
            let bytes = self.http.get(&url).send().await?.error_for_status()?.bytes().await?;
            Ok((bytes.len(), started.elapsed()))
        })
    }

    /// CPU time the server's threads have used so far.
    pub fn cpu_time(&self) -> Duration {
        threads_cpu_time(TestConsul::THREAD_NAME)
    }

    /// Stops the server.
    pub fn stop(self) {
        self.consul.block_on(self.consul.server.stop());
    }

    /// The VIP the agents agreed on for service `index`, from Consul's KV.
    pub fn vip_of(&self, index: u32) -> anyhow::Result<IpAddr> {
        let key = format!("viking/services/{}", Instance::name(index));
        let Some(entry) = self.server().kv_get(&key) else { bail!("no VIP record {key}") };
        Ok(String::from_utf8_lossy(&entry.value).trim().parse()?)
    }
}

/// Instances a node runs, as in a cluster of hosts running about 50 containers each (so a
/// cluster's nodes grow with its services: 60 nodes at 1,000 services, 6,000 at 100,000).
pub const INSTANCES_PER_NODE: u32 = 50;

/// The nodes a cluster of `services` services with `instances` instances each runs on.
pub fn nodes_for(services: u32, instances: u32) -> u32 {
    (services * instances).div_ceil(INSTANCES_PER_NODE).max(instances)
}

/// Instance `copy` of service `index`, on a made-up routable address unique to it (no
/// connection is ever made to it: the address is only written into maps), on one of
/// `nodes` nodes; the instances of a service are on different nodes.
#[derive(Clone, Copy, Debug)]
pub struct Instance {
    /// The service.
    pub index: u32,
    /// Which of its instances.
    pub copy: u32,
    /// The nodes of the cluster.
    pub nodes: u32,
}

impl Instance {
    /// The name of service `index`.
    pub fn name(index: u32) -> String {
        format!("svc-{index:06}")
    }

    fn id(&self) -> String {
        format!("{}-{}", Self::name(self.index), self.copy)
    }

    fn node_number(&self) -> u32 {
        (self.index * u32::from(INSTANCES) + self.copy) % self.nodes
    }

    fn node(&self) -> String {
        format!("node-{}", self.node_number())
    }

    /// The node's own address: one per node, as in a real cluster (an address changing
    /// with every registration would rewrite the node and touch all its services).
    fn node_address(&self) -> String {
        let n = self.node_number();
        format!("10.99.{}.{}", n / 250, 1 + n % 250)
    }

    fn address(&self) -> String {
        let n = self.index;
        format!("10.{}.{}.{}", 100 + self.copy * 2 + n / 62_500, (n / 250) % 250, 1 + n % 250)
    }

    /// The backend address Viking serves it at.
    pub fn socket_addr(&self) -> anyhow::Result<std::net::SocketAddr> {
        Ok(std::net::SocketAddr::new(self.address().parse()?, PORT))
    }

    /// For registering in-process.
    pub fn registration(&self) -> Registration {
        let (name, id, address) = (Self::name(self.index), self.id(), self.address());
        Registration::new(self.node(), self.node_address(), &name)
            .id(&id)
            .port(PORT)
            .service_address(&address)
            .check(CheckSpec::passing(format!("{id}-check")))
    }

    /// The `PUT /v1/catalog/register` body of the same registration.
    fn register_body(&self) -> serde_json::Value {
        let (name, id, address) = (Self::name(self.index), self.id(), self.address());
        serde_json::json!({
            "Node": self.node(),
            "Address": self.node_address(),
            "Service": { "ID": id, "Service": name, "Address": address, "Port": PORT },
            "Checks": [{ "CheckID": format!("{id}-check"), "Name": "check", "Status": "passing", "ServiceID": id }],
        })
    }
}

/// Flip number `flip` of a steady churn: the check of instance `copy` of one of `services`
/// services (spread over them) goes critical, or back to passing on the next round.
pub fn flip_check(server: &ConsulTestServer, flip: u32, services: u32, copy: u32) {
    let index = (flip * 104_729 + copy) % services;
    let status = if (flip / services).is_multiple_of(2) { Status::Critical } else { Status::Passing };
    server.set_check_status(&format!("{}-{copy}-check", Instance::name(index)), status);
}

/// Registers `services` services with `instances` passing instances each, on
/// [`nodes_for`] nodes.
pub fn register_all(server: &ConsulTestServer, services: u32, instances: u32) -> anyhow::Result<()> {
    let nodes = nodes_for(services, instances);
    let all = (0..services).flat_map(move |index| (0..instances).map(move |copy| Instance { index, copy, nodes }));
    server.register_many(all.map(|i| i.registration())).context("registering services")?;
    Ok(())
}

/// CPU time (user + system) of this process's threads called `name`.
fn threads_cpu_time(name: &str) -> Duration {
    let mut ticks = 0u64;
    for task in std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten() {
        let path = task.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if !comm.trim().starts_with(name) {
            continue;
        }
        ticks += std::fs::read_to_string(path.join("stat")).map(|stat| stat_cpu_ticks(&stat)).unwrap_or(0);
    }
    ticks_to_duration(ticks)
}
