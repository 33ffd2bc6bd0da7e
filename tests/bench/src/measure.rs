//! The measurement sequence: build the world, then for each number of services install
//! them everywhere and measure every setup in turn with the same load generator.

use std::{
    net::SocketAddrV4,
    path::Path,
    sync::atomic::{AtomicBool, Ordering},
};

use anyhow::bail;
use viking_common::names;
use viking_sandbox::Cgroup;

use crate::{
    cpu::CpuMonitor,
    load::{Args, Outcome, Workload},
    plan::Plan,
    protocol::{BACKENDS, VIP_PORT, vip},
    results::{Cost, Measured, Persistent, Point, Results, Sample},
    setups::{
        Setup,
        baseline::Baseline,
        haproxy::{FRONTEND, Haproxy},
        iptables::Iptables,
        viking::Agent,
    },
    stats::{Counters, RunTimeStats},
    world::{Cgroups, Namespace, run_load},
};

/// Namespace of every setup but iptables.
const NETNS: &str = "viking-bench";

/// Where one setup's load generator runs and what it connects to.
struct Route<'a> {
    setup: Setup,
    cgroup: &'a Cgroup,
    namespace: &'a Namespace,
    /// First target; `targets` consecutive addresses from it are used in turn.
    target: SocketAddrV4,
    targets: u32,
}

/// What stays up for the whole run.
struct World<'a> {
    plan: &'a Plan,
    work_dir: &'a Path,
    interrupted: &'a AtomicBool,
    cgroups: &'a Cgroups,
    namespace: &'a Namespace,
    cpu: CpuMonitor,
}

/// A run during which other processes used more than this share of the CPUs is listed
/// as disturbed in the report.
pub const DISTURBED: f64 = 0.05;

/// Runs every measurement of `plan`. Everything created is removed when this returns,
/// also on errors and Ctrl-C.
pub fn run_all(agent_binary: &Path, work_dir: &Path, plan: &Plan, interrupted: &AtomicBool) -> anyhow::Result<Results> {
    let cgroups = Cgroups::create()?;
    let namespace = Namespace::create(NETNS, plan.server_workers)?;
    eprintln!("viking-bench: starting viking-agent (maps sized for {} services)", plan.max_services());
    let mut agent = Agent::start(agent_binary, &cgroups.viking, work_dir, plan.max_services())?;
    let mut baseline = Baseline::attach(&cgroups.baseline, plan.max_services())?;
    let haproxy = Haproxy::start(&namespace, work_dir)?;
    let mut cpu = CpuMonitor::default();
    cpu.add_child(agent.pid());
    cpu.add_child(haproxy.pid());
    let world = World { plan, work_dir, interrupted, cgroups: &cgroups, namespace: &namespace, cpu };

    // Caches, page tables, CPU frequency: the first run of a fresh world is not like the others.
    let warm_up = Args { duration_ms: 1000, ..world.route_args(&world.direct(), Workload::Connections) };
    run_load(&cgroups.plain, &namespace, &warm_up)?;

    let mut results = Results::default();
    for (index, &services) in plan.sweep.iter().enumerate() {
        eprintln!("viking-bench: == {services} service(s) ==");
        let point = world.point(services, index == 0, &mut agent, &mut baseline, &mut results)?;
        results.points.push(point);
    }
    Ok(results)
}

impl World<'_> {
    fn check_interrupted(&self) -> anyhow::Result<()> {
        if self.interrupted.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        Ok(())
    }

    fn direct(&self) -> Route<'_> {
        Route {
            setup: Setup::Direct,
            cgroup: &self.cgroups.plain,
            namespace: self.namespace,
            target: BACKENDS[0],
            targets: 2,
        }
    }

    fn route_args(&self, route: &Route<'_>, workload: Workload) -> Args {
        let duration = match workload {
            Workload::Connections => self.plan.connections_run,
            Workload::Latency | Workload::Bulk => self.plan.persistent_run,
        };
        Args {
            workload,
            target: route.target,
            targets: route.targets,
            threads: self.plan.client_threads,
            duration_ms: duration.as_millis() as u64,
        }
    }

    /// Installs `services` services in every setup and measures them all.
    fn point(
        &self,
        services: u32,
        first: bool,
        agent: &mut Agent,
        baseline: &mut Baseline,
        results: &mut Results,
    ) -> anyhow::Result<Point> {
        let viking_apply = agent.set_services(services, self.plan.viking_apply_limit).map_err(|e| format!("{e:#}"));
        match &viking_apply {
            Ok(took) => eprintln!("viking-bench: agent applied {services} services in {:.1} s", took.as_secs_f64()),
            Err(err) => results.notes.push(format!("Viking, {services} services: not measured: {err}")),
        }
        baseline.set_services(services)?;
        let iptables =
            Iptables::create(services, self.plan.server_workers, self.work_dir, self.plan.iptables_install_limit)
                .map_err(|e| format!("{e:#}"));
        match &iptables {
            Ok(ipt) => eprintln!(
                "viking-bench: iptables-restore of {services} services took {:.1} s",
                ipt.install.as_secs_f64()
            ),
            Err(err) => results.notes.push(format!("iptables DNAT, {services} services: not measured: {err}")),
        }

        let vips = |setup, cgroup, namespace| Route {
            setup,
            cgroup,
            namespace,
            target: SocketAddrV4::new(vip(0), VIP_PORT),
            targets: services,
        };
        let mut routes = vec![self.direct()];
        if viking_apply.is_ok() {
            routes.push(vips(Setup::Viking, &self.cgroups.viking, self.namespace));
        }
        routes.push(vips(Setup::Baseline, &self.cgroups.baseline, self.namespace));
        if let Ok(ipt) = &iptables {
            routes.push(vips(Setup::Iptables, &self.cgroups.plain, ipt.namespace()));
        }
        if first {
            // Neither depends on the number of services: measured once.
            routes.push(Route {
                setup: Setup::Haproxy,
                cgroup: &self.cgroups.plain,
                namespace: self.namespace,
                target: FRONTEND,
                targets: 1,
            });
            routes.push(Route { setup: Setup::DirectUnderViking, cgroup: &self.cgroups.viking, ..self.direct() });
        }

        let mut connections: Vec<(Setup, Measured)> = routes.iter().map(|r| (r.setup, Ok(Sample::default()))).collect();
        for repetition in 0..self.plan.repetitions {
            // A different order each time, so no setup always runs right after another.
            for k in 0..routes.len() {
                let i = (k + repetition) % routes.len();
                self.check_interrupted()?;
                let args = self.route_args(&routes[i], Workload::Connections);
                let outcome = self.run(&routes[i], &args, "new connections", services, results);
                record(&mut connections[i].1, outcome.map(|o| o.rate()));
            }
        }
        if let Ok(ipt) = &iptables {
            match ipt.conntrack() {
                Ok((count, max)) if count * 10 >= max * 9 => results.notes.push(format!(
                    "iptables DNAT, {services} services: the conntrack table was nearly full ({count} of {max}); \
                     connects beyond it are dropped, which lowers iptables' rate"
                )),
                Ok(_) => {}
                Err(err) => results
                    .notes
                    .push(format!("iptables DNAT, {services} services: conntrack count unreadable: {err:#}")),
            }
        }
        let iptables_install = match &iptables {
            Ok(ipt) => Ok(ipt.install),
            Err(err) => Err(err.clone()),
        };
        // Setups that could not be installed at this size keep their reason in the table.
        if let Err(err) = &viking_apply {
            connections.push((Setup::Viking, Err(err.clone())));
        }
        if let Err(err) = &iptables {
            connections.push((Setup::Iptables, Err(err.clone())));
        }

        let cost = self.cost(&routes, services, agent, baseline, results)?;
        if first {
            self.persistent(&routes, results)?;
        }
        Ok(Point { services, connections, viking_apply, iptables_install, cost })
    }

    /// One load run; failures, partial failures and disturbed runs become notes.
    fn run(
        &self,
        route: &Route<'_>,
        args: &Args,
        purpose: &str,
        services: u32,
        results: &mut Results,
    ) -> Result<Outcome, String> {
        let before = self.cpu.snapshot();
        let outcome = run_load(route.cgroup, route.namespace, args).map_err(|e| format!("{e:#}"))?;
        let after = self.cpu.snapshot();
        let foreign = after.foreign_share_since(&before);
        results.foreign_cpu.values.push(foreign);
        let what = format!("{}, {services} service(s), {purpose}", route.setup.label());
        if foreign > DISTURBED {
            results.disturbed.push((what.clone(), foreign));
        }
        if outcome.operations == 0 {
            return Err(format!(
                "no operation succeeded ({})",
                outcome.first_error.as_deref().unwrap_or("no error reported")
            ));
        }
        if outcome.errors > 0 {
            results.notes.push(format!(
                "{what}: {} of {} operations failed (first: {})",
                outcome.errors,
                outcome.errors + outcome.operations,
                outcome.first_error.as_deref().unwrap_or("?")
            ));
        }
        let shown = match args.workload {
            Workload::Connections => format!("{:.0} conn/s", outcome.rate()),
            Workload::Latency => {
                format!("p50 {:.1} µs, p99 {:.1} µs", outcome.p50_ns as f64 / 1e3, outcome.p99_ns as f64 / 1e3)
            }
            Workload::Bulk => format!("{:.2} Gbit/s", gbit_s(&outcome)),
        };
        eprintln!("viking-bench:   {what}: {shown} (CPU idle {:.0}%)", after.idle_share_since(&before) * 100.0);
        Ok(outcome)
    }

    /// Program costs per call: one new-connections run each for Viking and the baseline
    /// program with BPF run-time statistics on (they add two clock reads per call, so the
    /// throughput runs are made without them).
    fn cost(
        &self,
        routes: &[Route<'_>],
        services: u32,
        agent: &Agent,
        baseline: &Baseline,
        results: &mut Results,
    ) -> anyhow::Result<Cost> {
        let mut cost = Cost::default();
        let args = |route: &Route<'_>| Args {
            duration_ms: self.plan.cost_run.as_millis() as u64,
            ..self.route_args(route, Workload::Connections)
        };
        let _stats = RunTimeStats::enable()?;
        if let Some(route) = routes.iter().find(|r| r.setup == Setup::Viking) {
            self.check_interrupted()?;
            let connect4 = agent.program_id(names::PROG_CONNECT4)?;
            let release = agent.program_id(names::PROG_SOCK_RELEASE)?;
            // Absent from agents built before outlier ejection (an A/B run against one).
            let sock_ops = agent.program_id(names::PROG_SOCK_OPS).ok();
            let (c0, r0) = (Counters::read(connect4)?, Counters::read(release)?);
            let s0 = sock_ops.map(Counters::read).transpose()?;
            let outcome = self
                .run(route, &args(route), "new connections, BPF statistics on", services, results)
                .map_err(anyhow::Error::msg)?;
            let (calls, per_call) = Counters::read(connect4)?.since(&c0);
            cost.viking_connect4 = per_call;
            cost.viking_release = Counters::read(release)?.since(&r0).1;
            if let (Some(id), Some(s0)) = (sock_ops, &s0) {
                let (ops_calls, ops_per_call) = Counters::read(id)?.since(s0);
                cost.viking_sock_ops_per_connection = ops_per_call
                    .filter(|_| outcome.operations > 0)
                    .map(|ns| ns * ops_calls as f64 / outcome.operations as f64);
            }
            if calls < outcome.operations {
                results.notes.push(format!(
                    "Viking, {services} services: connect4 ran {calls} times for {} connections",
                    outcome.operations
                ));
            }
        }
        if let Some(route) = routes.iter().find(|r| r.setup == Setup::Baseline) {
            self.check_interrupted()?;
            let id = baseline.program_id()?;
            let before = Counters::read(id)?;
            self.run(route, &args(route), "new connections, BPF statistics on", services, results)
                .map_err(anyhow::Error::msg)?;
            cost.baseline = Counters::read(id)?.since(&before).1;
        }
        let shown = |v: Option<f64>| v.map_or("-".into(), |ns| format!("{ns:.0} ns"));
        eprintln!(
            "viking-bench:   cost per call: Viking connect4 {}, sock_release {}, baseline {}; sock_ops {} per connection",
            shown(cost.viking_connect4),
            shown(cost.viking_release),
            shown(cost.baseline),
            shown(cost.viking_sock_ops_per_connection)
        );
        Ok(cost)
    }

    /// Latency and bulk throughput on established connections (the setups that differ
    /// after connect: the baseline program does nothing after it).
    fn persistent(&self, routes: &[Route<'_>], results: &mut Results) -> anyhow::Result<()> {
        let measured: Vec<&Route<'_>> = routes
            .iter()
            .filter(|r| matches!(r.setup, Setup::Direct | Setup::Viking | Setup::Iptables | Setup::Haproxy))
            .collect();
        let mut rows: Vec<Persistent> = measured
            .iter()
            .map(|r| Persistent {
                setup: r.setup,
                p50_us: Sample::default(),
                p99_us: Sample::default(),
                gbit_s: Sample::default(),
            })
            .collect();
        for repetition in 0..self.plan.persistent_repetitions {
            for k in 0..measured.len() {
                let i = (k + repetition) % measured.len();
                self.check_interrupted()?;
                match self.run(measured[i], &self.route_args(measured[i], Workload::Latency), "latency", 1, results) {
                    Ok(o) => {
                        rows[i].p50_us.values.push(o.p50_ns as f64 / 1e3);
                        rows[i].p99_us.values.push(o.p99_ns as f64 / 1e3);
                    }
                    Err(err) => results.notes.push(format!("{}, latency run failed: {err}", measured[i].setup.label())),
                }
                self.check_interrupted()?;
                match self.run(measured[i], &self.route_args(measured[i], Workload::Bulk), "bulk", 1, results) {
                    Ok(o) => rows[i].gbit_s.values.push(gbit_s(&o)),
                    Err(err) => results.notes.push(format!("{}, bulk run failed: {err}", measured[i].setup.label())),
                }
            }
        }
        results.persistent = rows;
        Ok(())
    }
}

/// Adds a run's value to a measurement; a failed run turns the measurement into its error.
fn record(measured: &mut Measured, value: Result<f64, String>) {
    match (measured.as_mut(), value) {
        (Ok(sample), Ok(v)) => sample.values.push(v),
        (Ok(_), Err(err)) => *measured = Err(err),
        (Err(_), _) => {}
    }
}

fn gbit_s(outcome: &Outcome) -> f64 {
    outcome.bytes as f64 * 8.0 / outcome.seconds / 1e9
}
