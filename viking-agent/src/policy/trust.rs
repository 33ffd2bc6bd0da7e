//! Who decides a container's mode. The operator sets the default (`[docker] policy`); a
//! container's `viking.policy` label is written by whoever deploys it, so by default it may
//! only make the container stricter. Lowering the mode (`off`, `bypass`) takes a container
//! the operator listed in `[docker.trusted]`.

use viking_common::PolicyMode;

use super::problems::PolicyProblem;
use crate::{
    config::{LabelRule, Trusted},
    model::Container,
};

/// Nomad's docker driver sets these labels when its `extra_labels` includes `namespace`
/// and `job_name`, after the job's own labels, so a job cannot set them itself.
pub const LABEL_NOMAD_NAMESPACE: &str = "com.hashicorp.nomad.namespace";
/// See [`LABEL_NOMAD_NAMESPACE`].
pub const LABEL_NOMAD_JOB: &str = "com.hashicorp.nomad.job_name";

/// The operator's rules for labels that choose a mode.
#[derive(Clone, Copy, Debug)]
pub struct Trust<'a> {
    /// The operator's default mode.
    pub default_mode: PolicyMode,
    /// What labels may do.
    pub labels: LabelRule,
    /// Containers that may choose any mode.
    pub trusted: &'a Trusted,
}

impl Trust<'_> {
    /// The mode `container` runs with, given the mode its label asks for; and, when the
    /// label is not honoured, why (for the log).
    pub fn mode(&self, container: &Container, label: Option<PolicyMode>) -> (PolicyMode, Option<PolicyProblem>) {
        let Some(asked) = label else { return (self.default_mode, None) };
        let allowed = match self.labels {
            LabelRule::Any => true,
            LabelRule::Tighten => asked.strictness() >= self.default_mode.strictness(),
            LabelRule::Ignore => asked == self.default_mode,
        };
        if allowed || self.is_trusted(container) {
            return (asked, None);
        }
        let refused = PolicyProblem::LabelRefused {
            container: container.display_name(),
            asked,
            rule: self.labels,
            image: container.image.clone(),
            runs_in: self.default_mode,
        };
        (self.default_mode, Some(refused))
    }

    fn is_trusted(&self, container: &Container) -> bool {
        let label = |key: &str| container.labels.get(key).map(String::as_str);
        self.trusted.images.iter().any(|pattern| image_matches(pattern, &container.image))
            || label(LABEL_NOMAD_NAMESPACE).is_some_and(|ns| self.trusted.nomad_namespaces.iter().any(|n| n == ns))
            || label(LABEL_NOMAD_JOB).is_some_and(|job| self.trusted.nomad_jobs.iter().any(|j| j == job))
    }
}

/// Whether `image` (as the container was created from, e.g. `envoyproxy/envoy:v1.31`)
/// matches `pattern`: `repo` matches every tag and digest of it, `repo:tag` only that
/// tag, `prefix/*` every image below the prefix. Docker Hub's implicit `docker.io/` and
/// `library/` are ignored on both sides.
pub fn image_matches(pattern: &str, image: &str) -> bool {
    let (pattern, image) = (normalize(pattern), normalize(image));
    if let Some(prefix) = pattern.strip_suffix("/*") {
        return image.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/'));
    }
    if has_tag_or_digest(pattern) {
        return pattern == image;
    }
    repository(image) == pattern
}

fn normalize(name: &str) -> &str {
    let name = name.strip_prefix("docker.io/").unwrap_or(name);
    name.strip_prefix("library/").unwrap_or(name)
}

/// The name without its `:tag` or `@digest` (a `:` before the last `/` is a registry port).
fn repository(image: &str) -> &str {
    let image = image.split_once('@').map_or(image, |(name, _)| name);
    let last = image.rfind('/').map_or(0, |slash| slash + 1);
    match image[last..].find(':') {
        Some(colon) => &image[..last + colon],
        None => image,
    }
}

fn has_tag_or_digest(name: &str) -> bool {
    repository(name).len() != name.len()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn container(image: &str, labels: &[(&str, &str)]) -> Container {
        Container {
            id: "c1".into(),
            name: "c".into(),
            image: image.into(),
            cgroup_id: 7,
            labels: labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect::<BTreeMap<_, _>>(),
            env: Vec::new(),
            nomad: None,
        }
    }

    #[test]
    fn images_match_by_repository_tag_or_prefix() {
        assert!(image_matches("envoyproxy/envoy", "envoyproxy/envoy:v1.31"));
        assert!(image_matches("envoyproxy/envoy", "docker.io/envoyproxy/envoy@sha256:abc"));
        assert!(image_matches("envoyproxy/envoy:v1.31", "envoyproxy/envoy:v1.31"));
        assert!(!image_matches("envoyproxy/envoy:v1.31", "envoyproxy/envoy:v1.32"));
        assert!(!image_matches("envoyproxy/envoy", "envoyproxy/envoy-evil"));
        assert!(image_matches("redis", "docker.io/library/redis:7"));
        assert!(image_matches("registry.local:5000/mesh/*", "registry.local:5000/mesh/proxy:1"));
        assert!(!image_matches("registry.local:5000/mesh/*", "registry.local:5000/meshy/proxy"));
        assert!(image_matches("registry.local:5000/proxy", "registry.local:5000/proxy"));
    }

    #[test]
    fn by_default_labels_only_tighten() {
        let trusted = Trusted::default();
        let trust = Trust { default_mode: PolicyMode::Audit, labels: LabelRule::Tighten, trusted: &trusted };
        let plain = container("app", &[]);
        assert_eq!(trust.mode(&plain, None), (PolicyMode::Audit, None));
        assert_eq!(trust.mode(&plain, Some(PolicyMode::Enforce)), (PolicyMode::Enforce, None));
        for lower in [PolicyMode::Off, PolicyMode::Bypass] {
            let (mode, why) = trust.mode(&plain, Some(lower));
            assert_eq!(mode, PolicyMode::Audit);
            assert_eq!(
                why,
                Some(PolicyProblem::LabelRefused {
                    container: "c".into(),
                    asked: lower,
                    rule: LabelRule::Tighten,
                    image: "app".into(),
                    runs_in: PolicyMode::Audit
                })
            );
        }
        let (_, why) = trust.mode(&plain, Some(PolicyMode::Bypass));
        assert_eq!(
            why.unwrap().to_string(),
            "container \"c\": label viking.policy=bypass is not honoured: a label may only make a container \
             stricter, and the container is not in [docker.trusted] (image \"app\"); it runs in audit"
        );
    }

    #[test]
    fn trusted_containers_and_the_any_rule_may_lower() {
        let trusted = Trusted {
            images: vec!["envoyproxy/envoy".into()],
            nomad_namespaces: vec!["mesh".into()],
            nomad_jobs: vec!["ingress".into()],
        };
        let trust = Trust { default_mode: PolicyMode::Enforce, labels: LabelRule::Tighten, trusted: &trusted };
        assert_eq!(trust.mode(&container("envoyproxy/envoy:v1", &[]), Some(PolicyMode::Bypass)).0, PolicyMode::Bypass);
        let in_mesh = container("app", &[(LABEL_NOMAD_NAMESPACE, "mesh")]);
        assert_eq!(trust.mode(&in_mesh, Some(PolicyMode::Off)).0, PolicyMode::Off);
        let ingress = container("app", &[(LABEL_NOMAD_JOB, "ingress")]);
        assert_eq!(trust.mode(&ingress, Some(PolicyMode::Bypass)).0, PolicyMode::Bypass);
        let other = container("app", &[(LABEL_NOMAD_NAMESPACE, "default")]);
        assert_eq!(trust.mode(&other, Some(PolicyMode::Bypass)).0, PolicyMode::Enforce);

        let none = Trusted::default();
        let any = Trust { default_mode: PolicyMode::Enforce, labels: LabelRule::Any, trusted: &none };
        assert_eq!(any.mode(&other, Some(PolicyMode::Bypass)), (PolicyMode::Bypass, None));
        let ignore = Trust { labels: LabelRule::Ignore, ..any };
        let (mode, why) = ignore.mode(&other, Some(PolicyMode::Enforce));
        assert_eq!(mode, PolicyMode::Enforce);
        assert!(why.is_none(), "asking for the default is not a refusal");
        let ignore_audit = Trust { default_mode: PolicyMode::Audit, ..ignore };
        let (mode, why) = ignore_audit.mode(&other, Some(PolicyMode::Enforce));
        assert_eq!(mode, PolicyMode::Audit);
        let why = why.unwrap();
        assert!(matches!(why, PolicyProblem::LabelRefused { rule: LabelRule::Ignore, .. }), "{why:?}");
        assert!(why.to_string().contains("labels do not choose modes here (policy_labels = \"ignore\")"), "{why}");
    }
}
