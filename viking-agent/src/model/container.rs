//! Containers as the policy sees them, whichever runtime reported them (the Docker source
//! builds them from `docker inspect` and from `create` events).

use std::collections::BTreeMap;

/// A container (created or running) as the policy needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Container {
    /// The runtime's id.
    pub id: String,
    /// The runtime's name, without Docker's leading `/`.
    pub name: String,
    /// The image it was created from, as given (`Config.Image`, e.g. `redis:7`).
    pub image: String,
    /// Id of the cgroup its processes run in: what the kernel programs see.
    pub cgroup_id: u64,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Environment, `KEY=value`.
    pub env: Vec<String>,
    /// The Nomad task it runs, when Nomad started it.
    pub nomad: Option<NomadTask>,
}

/// Nomad's identity of a task container: like Nomad, Viking keys it by name and alloc id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NomadTask {
    /// The task name.
    pub task: String,
    /// The allocation id.
    pub alloc_id: String,
}

impl Container {
    /// How logs name the container: `task/alloc` for Nomad tasks, the runtime's name
    /// otherwise.
    pub fn display_name(&self) -> String {
        match &self.nomad {
            Some(nomad) => format!("{}/{}", nomad.task, nomad.alloc_id),
            None => self.name.clone(),
        }
    }
}

/// The container runtime's parent cgroup as the kernel sees it: the scope of the policy's
/// backstop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuntimeScope {
    /// Its cgroup id (the directory's inode).
    pub cgroup_id: u64,
    /// Its depth below the cgroup2 root (the root is 0).
    pub level: u32,
}
