//! One name, one VIP: a name resolves (DNS, env vars) to one VIP, and a VIP belongs to one
//! name. The config file is checked against itself, and the merge checks every source
//! against the ones before it, with the same claims.

use std::{borrow::Borrow, collections::HashMap, hash::Hash, net::IpAddr};

/// What a service's name and VIP clash with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Clash {
    /// The name already has another VIP.
    #[error("the name already has VIP {0}")]
    NameHasVip(IpAddr),
    /// The VIP already belongs to another name.
    #[error("the VIP already belongs to {0:?}")]
    VipHasName(String),
}

/// The names and VIPs claimed so far; `N` is an owned or a borrowed name.
#[derive(Debug)]
pub struct NameVipClaims<N> {
    vip_of: HashMap<N, IpAddr>,
    name_of: HashMap<IpAddr, N>,
}

impl<N> Default for NameVipClaims<N> {
    fn default() -> Self {
        Self { vip_of: HashMap::new(), name_of: HashMap::new() }
    }
}

impl<N: Borrow<str> + Clone + Eq + Hash> NameVipClaims<N> {
    /// Whether `name` on `vip` agrees with the claims so far.
    pub fn check(&self, name: &str, vip: IpAddr) -> Result<(), Clash> {
        if let Some(claimed) = self.vip_of.get(name).filter(|claimed| **claimed != vip) {
            return Err(Clash::NameHasVip(*claimed));
        }
        match self.name_of.get(&vip).map(Borrow::borrow).filter(|claimed: &&str| *claimed != name) {
            Some(claimed) => Err(Clash::VipHasName(claimed.to_owned())),
            None => Ok(()),
        }
    }

    /// Claims `name` and `vip` for each other (after [`Self::check`] agreed).
    pub fn claim(&mut self, name: N, vip: IpAddr) {
        self.name_of.insert(vip, name.clone());
        self.vip_of.insert(name, vip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_keeps_its_vip_and_a_vip_its_name() {
        let (ten, eleven): (IpAddr, IpAddr) = ("240.0.0.10".parse().unwrap(), "240.0.0.11".parse().unwrap());
        let mut claims = NameVipClaims::default();
        claims.claim("web", ten);
        assert_eq!(claims.check("web", ten), Ok(()), "another port of the same service");
        assert_eq!(claims.check("web", eleven), Err(Clash::NameHasVip(ten)));
        assert_eq!(claims.check("api", ten), Err(Clash::VipHasName("web".into())));
        assert_eq!(claims.check("api", eleven), Ok(()));
    }
}
