//! What `/v1/catalog/services` lists, kept up to date by every service write: each
//! service name (exact case, as Consul groups `ServiceName`) with how many instances carry
//! each tag, so the listing is read in time proportional to the names, as Consul's memdb
//! answers it, rather than by visiting every instance under the store's lock.

use std::collections::BTreeMap;

/// Service names and their tags.
#[derive(Debug, Default)]
pub(crate) struct ServiceList {
    pub(crate) names: BTreeMap<String, Listed>,
}

/// One service name's instances and tags.
#[derive(Debug, Default)]
pub(crate) struct Listed {
    instances: usize,
    /// Tag → instances carrying it.
    tags: BTreeMap<String, usize>,
}

impl Listed {
    /// The union of the instances' tags, sorted.
    pub(crate) fn tags(&self) -> Vec<&str> {
        self.tags.keys().map(String::as_str).collect()
    }
}

impl ServiceList {
    /// An instance of `name` with `tags` was registered.
    pub(crate) fn add(&mut self, name: &str, tags: &[String]) {
        let listed = self.names.entry(name.to_owned()).or_default();
        listed.instances += 1;
        for tag in tags {
            *listed.tags.entry(tag.clone()).or_default() += 1;
        }
    }

    /// An instance of `name` with `tags` went (or changed: it is added again).
    pub(crate) fn remove(&mut self, name: &str, tags: &[String]) {
        let Some(listed) = self.names.get_mut(name) else { return };
        listed.instances -= 1;
        if listed.instances == 0 {
            self.names.remove(name);
            return;
        }
        for tag in tags {
            if let Some(count) = listed.tags.get_mut(tag) {
                *count -= 1;
                if *count == 0 {
                    listed.tags.remove(tag);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ServiceList;

    #[test]
    fn a_tag_stays_while_one_instance_has_it_and_a_name_while_one_instance_is_left() {
        let mut list = ServiceList::default();
        let tags = |t: &[&str]| t.iter().map(|t| (*t).to_owned()).collect::<Vec<_>>();
        list.add("web", &tags(&["v1", "blue"]));
        list.add("web", &tags(&["v1"]));
        assert_eq!(list.names["web"].tags(), ["blue", "v1"]);
        list.remove("web", &tags(&["v1", "blue"]));
        assert_eq!(list.names["web"].tags(), ["v1"]);
        list.remove("web", &tags(&["v1"]));
        assert!(list.names.is_empty());
    }
}
