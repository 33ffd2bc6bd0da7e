//! The programs pass this kernel's verifier and attach to a cgroup (in-process, through
//! the agent's library, without any agent process).

use viking_agent::{
    dataplane::{Dataplane, HOOKS, pins::PinDir},
    model::Limits,
};
use viking_tests::{Cgroup, pins, require_root};

#[test]
fn programs_load_through_the_verifier_and_attach() {
    require_root();
    let cgroup = Cgroup::unique().unwrap();
    let pins = pins();
    let mut dataplane = Dataplane::install(&PinDir::new(pins.path()), cgroup.path(), &Limits::default())
        .unwrap_or_else(|err| panic!("{err}"));
    for hook in &HOOKS {
        let program = dataplane.ebpf.program_mut(hook.program).expect("program in object");
        let info = program.info().expect("loaded program info");
        let verified = info.verified_instruction_count().unwrap_or(0);
        assert!(verified > 0, "{} was not verified", hook.program);
        eprintln!("{}: {verified} instructions verified, {} jitted bytes", hook.program, info.size_jitted());
        assert!(PinDir::new(pins.path()).link(hook.program).exists(), "{} link pinned", hook.program);
    }
}
