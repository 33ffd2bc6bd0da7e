//! The yardstick: `viking-ebpf`'s `baseline-redirect` binary, the simplest possible
//! `cgroup/connect4` redirect (one hash lookup, one rewrite), loaded by the bench itself
//! and attached to its own cgroup. Its link belongs to this process: it is detached when
//! the bench exits, however it exits.

use std::{fs::File, net::Ipv4Addr};

use anyhow::Context as _;
use aya::{
    Ebpf, EbpfLoader,
    maps::HashMap,
    programs::{CgroupAttachMode, CgroupSockAddr},
};
use viking_sandbox::Cgroup;

use crate::protocol::{BACKENDS, VIP_PORT, vip};

/// The object built by `build.rs`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/baseline-redirect"));
const MAP: &str = "BASELINE_REDIRECTS";
const PROGRAM: &str = "baseline_conn4";

/// The loaded and attached baseline program; detached and unloaded on drop.
#[derive(Debug)]
pub struct Baseline {
    ebpf: Ebpf,
    installed: u32,
}

impl Baseline {
    /// Loads the program with room for `max_services` redirects and attaches it to `cgroup`.
    pub fn attach(cgroup: &Cgroup, max_services: u32) -> anyhow::Result<Self> {
        let mut ebpf =
            EbpfLoader::new().map_max_entries(MAP, max_services).load(OBJECT).context("loading baseline-redirect")?;
        let program: &mut CgroupSockAddr =
            ebpf.program_mut(PROGRAM).context("baseline-redirect has no program baseline_conn4")?.try_into()?;
        program.load().context("loading baseline_conn4 into the kernel")?;
        let cgroup_dir = File::open(cgroup.path()).with_context(|| format!("opening {}", cgroup.path().display()))?;
        program.attach(cgroup_dir, CgroupAttachMode::Single).context("attaching baseline_conn4")?;
        Ok(Self { ebpf, installed: 0 })
    }

    /// Makes services `0..count` redirect: VIP `i` goes to backend `i % 2`, the same spread
    /// as Viking's round robin over two backends.
    pub fn set_services(&mut self, count: u32) -> anyhow::Result<()> {
        let mut map: HashMap<_, u64, u64> =
            HashMap::try_from(self.ebpf.map_mut(MAP).context("baseline-redirect has no redirect map")?)?;
        for i in self.installed..count {
            let backend = BACKENDS[i as usize % BACKENDS.len()];
            map.insert(pack(vip(i), VIP_PORT), pack(*backend.ip(), backend.port()), 0)
                .with_context(|| format!("inserting redirect {i}"))?;
        }
        self.installed = self.installed.max(count);
        Ok(())
    }

    /// The kernel id of the program, for its run-time statistics.
    pub fn program_id(&self) -> anyhow::Result<u32> {
        let program: &CgroupSockAddr = self.ebpf.program(PROGRAM).context("no baseline_conn4")?.try_into()?;
        Ok(program.info()?.id())
    }
}

/// `ip << 32 | port`, each in network byte order as `bpf_sock_addr` holds them, read as
/// native integers — the packing `baseline-redirect.rs` uses.
fn pack(ip: Ipv4Addr, port: u16) -> u64 {
    (u64::from(u32::from_ne_bytes(ip.octets())) << 32) | u64::from(u16::from_ne_bytes(port.to_be_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_endian = "little")]
    fn packing_keeps_network_byte_order() {
        // On this little-endian host 127.0.0.2 is 0x0200007f and port 9000 (0x2328) is 0x2823.
        assert_eq!(pack(Ipv4Addr::new(127, 0, 0, 2), 9000), (0x0200_007f_u64 << 32) | 0x2823);
    }
}
