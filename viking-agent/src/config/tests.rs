//! Every rejection of the config file: the field, the value and the reason, and the message
//! a user sees.

use std::net::IpAddr;

use super::*;
use crate::model::{BackendError, NameError, OutlierError, OutlierProblem, UnknownName};

fn one_service(body: &str) -> String {
    format!("[[service]]\n{body}\n")
}

/// Parses and returns the single error.
fn refused(text: &str) -> ServiceError {
    let mut parsed = Config::parse(text).unwrap_or_else(|err| panic!("file rejected as a whole: {err}"));
    assert_eq!(parsed.errors.len(), 1, "{:?}", parsed.errors);
    parsed.errors.remove(0)
}

/// The single error's field, value and reason.
fn reason_of(text: &str) -> (String, String, FieldError) {
    let err = refused(text);
    (err.field, err.value, err.reason)
}

fn refusal(field: &str, value: &str, reason: FieldError) -> (String, String, FieldError) {
    (field.into(), value.into(), reason)
}

const WEB: &str = "name = \"web\"\nvip = \"240.0.0.10\"\nport = 80\n";

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn a_valid_file_parses_with_defaults() {
    let parsed = Config::parse(&one_service(&format!("{WEB}backends = [\"127.0.0.1:9001\", \"[::1]:9\"]"))).unwrap();
    // The IPv6 backend does not match the IPv4 VIP.
    assert_eq!(parsed.errors.len(), 1);
    assert_eq!(parsed.errors[0].reason, FieldError::Backend(BackendError::FamilyDiffers(ip("240.0.0.10"))));
    let service = parsed.config.services.services.values().next().unwrap();
    assert_eq!(service.frontend.protocol, crate::model::Protocol::Tcp);
    assert_eq!(service.algorithm, viking_common::Algorithm::RoundRobin);
    assert_eq!(service.backends, [crate::model::BackendSpec::new("127.0.0.1:9001".parse().unwrap())]);
    assert_eq!(parsed.config.limits, Limits::default());
    assert_eq!(parsed.config.agent.vip_ranges, VipRanges::default());
}

#[test]
fn vip_outside_the_range_is_rejected() {
    let err = refused(&one_service("name = \"web\"\nvip = \"10.0.0.1\"\nport = 80"));
    assert_eq!(err.reason, FieldError::OutsideVipRanges(VipRanges::default()));
    assert_eq!(
        err.to_string(),
        "service[0] \"web\": `vip` = \"10.0.0.1\": outside the VIP ranges (240.0.0.0/4); set agent.vip_ranges (service skipped)"
    );
}

#[test]
fn vip_range_is_configurable() {
    let text = format!(
        "[agent]\nvip_ranges = [\"10.96.0.0/12\"]\n{}",
        one_service("name = \"web\"\nvip = \"10.96.0.1\"\nport = 80")
    );
    assert!(Config::parse(&text).unwrap().errors.is_empty());
}

#[test]
fn vip_that_is_not_an_address_is_rejected() {
    assert_eq!(
        reason_of(&one_service("name = \"web\"\nvip = \"web.local\"\nport = 80")),
        refusal("vip", "\"web.local\"", FieldError::NotAnIp)
    );
}

#[test]
fn port_zero_and_out_of_range_are_rejected() {
    assert_eq!(
        reason_of(&one_service("name = \"web\"\nvip = \"240.0.0.10\"\nport = 0")),
        refusal("port", "0", FieldError::Port)
    );
    assert_eq!(
        reason_of(&one_service("name = \"web\"\nvip = \"240.0.0.10\"\nport = 70000")),
        refusal("port", "70000", FieldError::Port)
    );
    assert_eq!(
        reason_of(&one_service("name = \"web\"\nvip = \"240.0.0.10\"\nport = \"80\"")),
        refusal("port", "\"80\"", FieldError::NotAnInteger)
    );
}

#[test]
fn backend_that_is_a_vip_is_skipped() {
    let err = refused(&one_service(&format!("{WEB}backends = [\"240.0.0.11:80\"]")));
    assert_eq!(
        (err.field.as_str(), &err.reason, err.backend_only),
        ("backends[0]", &FieldError::Backend(BackendError::InsideVipRanges(VipRanges::default())), true)
    );
    assert!(err.to_string().ends_with("(backend skipped)"), "{err}");
}

#[test]
fn backend_with_port_zero_or_bad_address_is_skipped() {
    let backend = |entry: &str| reason_of(&one_service(&format!("{WEB}backends = [{entry}]"))).2;
    assert_eq!(backend("\"127.0.0.1:0\""), FieldError::Backend(BackendError::PortZero));
    assert_eq!(backend("\"nonsense\""), FieldError::NotAnAddress);
    assert_eq!(backend("\"224.0.0.1:80\""), FieldError::Backend(BackendError::NotUnicast));
    assert_eq!(backend("\"0.0.0.0:80\""), FieldError::Backend(BackendError::NotUnicast));
    assert_eq!(
        reason_of(&one_service(&format!("{WEB}backends = [80]"))),
        refusal("backends[0]", "80", FieldError::NotABackend)
    );
}

#[test]
fn a_duplicate_backend_is_skipped_once() {
    let parsed = Config::parse(&one_service(&format!("{WEB}backends = [\"127.0.0.1:1\", \"127.0.0.1:1\"]"))).unwrap();
    assert_eq!((parsed.errors[0].field.as_str(), &parsed.errors[0].reason), ("backends[1]", &FieldError::ListedTwice));
    assert_eq!(parsed.config.services.services.values().next().unwrap().backends.len(), 1);
}

#[test]
fn duplicate_frontend_is_rejected() {
    let text = format!("{}{}", one_service(WEB), one_service("name = \"web2\"\nvip = \"240.0.0.10\"\nport = 80"));
    let err = refused(&text);
    assert_eq!(err.reason, FieldError::DuplicateFrontend("web".into()));
    assert_eq!(
        err.to_string(),
        "service[1] \"web2\": `vip` = 240.0.0.10:80/tcp: duplicate frontend, already used by service \"web\" (service skipped)"
    );
}

#[test]
fn same_vip_and_port_with_another_protocol_is_fine() {
    let text = format!(
        "{}{}",
        one_service(WEB),
        one_service("name = \"web\"\nvip = \"240.0.0.10\"\nport = 80\nprotocol = \"udp\"")
    );
    assert!(Config::parse(&text).unwrap().errors.is_empty());
}

#[test]
fn one_name_has_one_vip_and_one_vip_one_name() {
    let text = format!("{}{}", one_service(WEB), one_service("name = \"web\"\nvip = \"240.0.0.12\"\nport = 81"));
    let err = refused(&text);
    assert_eq!(err.reason, FieldError::NameHasVip { name: "web".into(), vip: ip("240.0.0.10") });
    assert!(err.to_string().contains("service \"web\" already has VIP 240.0.0.10; one name has one VIP"), "{err}");
    let text = format!("{}{}", one_service(WEB), one_service("name = \"api\"\nvip = \"240.0.0.10\"\nport = 81"));
    let err = refused(&text);
    assert_eq!(err.reason, FieldError::VipHasName("web".into()));
    assert!(err.to_string().contains("`vip` = \"240.0.0.10\": VIP already belongs to service \"web\""), "{err}");
}

#[test]
fn too_many_backends_names_the_limit() {
    let backends: Vec<String> = (1..=3).map(|p| format!("\"127.0.0.1:{p}\"")).collect();
    let text = format!(
        "[limits]\nmax_backends_per_service = 2\n{}",
        one_service(&format!("{WEB}backends = [{}]", backends.join(",")))
    );
    let err = refused(&text);
    assert_eq!(reason_of(&text), refusal("backends", "3 entries", FieldError::TooManyBackends(2)));
    assert!(err.to_string().contains("`backends` = 3 entries: more than limits.max_backends_per_service = 2"), "{err}");
}

#[test]
fn unknown_keys_are_rejected() {
    let err = refused(&one_service(&format!("{WEB}backendz = []")));
    assert_eq!((err.field.as_str(), err.value.as_str()), ("backendz", "[]"));
    assert!(matches!(err.reason, FieldError::UnknownKey { known } if known.contains(&"backends")), "{err:?}");
    assert!(err.to_string().contains("`backendz` = []: unknown key; known keys: name, vip, port"), "{err}");
    let whole = Config::parse("[agnet]\nvip_ranges = []\n").unwrap_err().to_string();
    assert!(whole.contains("unknown field `agnet`"), "{whole}");
    let limits = Config::parse("[limits]\nmax_servics = 3\n").unwrap_err().to_string();
    assert!(limits.contains("unknown field `max_servics`"), "{limits}");
}

#[test]
fn missing_and_malformed_fields_are_named() {
    assert_eq!(
        reason_of(&one_service("vip = \"240.0.0.10\"\nport = 80")),
        refusal("name", "(missing)", FieldError::Missing)
    );
    assert_eq!(reason_of(&one_service("name = \"web\"\nport = 80")), refusal("vip", "(missing)", FieldError::Missing));
    assert_eq!(
        reason_of(&one_service("name = \"bad name\"\nvip = \"240.0.0.10\"\nport = 80")),
        refusal("name", "\"bad name\"", FieldError::Name(NameError::Characters))
    );
    let err = refused(&one_service(&format!("{WEB}protocol = \"sctp\"")));
    assert_eq!(err.reason, FieldError::Unknown(UnknownName { expected: vec!["tcp", "udp"] }));
    assert!(err.to_string().contains("`protocol` = \"sctp\": must be \"tcp\" or \"udp\""), "{err}");
    let (field, value, reason) = reason_of(&one_service(&format!("{WEB}algorithm = \"fastest\"")));
    assert_eq!((field.as_str(), value.as_str()), ("algorithm", "\"fastest\""));
    assert!(matches!(reason, FieldError::Unknown(_)), "{reason:?}");
}

#[test]
fn family_mismatch_is_rejected() {
    assert_eq!(
        reason_of(&one_service(&format!("{WEB}backends = [\"[fd00::1]:80\"]"))).2,
        FieldError::Backend(BackendError::FamilyDiffers(ip("240.0.0.10")))
    );
}

#[test]
fn one_bad_service_does_not_stop_the_others() {
    let text = format!("{}{}", one_service("name = \"bad\"\nvip = \"1.2.3.4\"\nport = 80"), one_service(WEB));
    let parsed = Config::parse(&text).unwrap();
    assert_eq!(parsed.errors.len(), 1);
    assert_eq!(parsed.config.services.services.len(), 1);
}

#[test]
fn bad_limits_reject_the_file() {
    let err = Config::parse("[limits]\nmax_services = 0\n").unwrap_err();
    assert!(matches!(err, ConfigError::Limit(LimitError { field: "limits.max_services", value: 0, .. })), "{err:?}");
    assert_eq!(err.to_string(), "invalid config: `limits.max_services` = 0: out of range 1..=16777216");
    let err = Config::parse("[agent]\nvip_ranges = []\n").unwrap_err();
    assert!(
        matches!(
            &err,
            ConfigError::Value(SettingError { field: "agent.vip_ranges", reason: SettingProblem::Empty(_), .. })
        ),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "invalid config: `agent.vip_ranges` = []: at least one range is needed");
}

#[test]
fn addresses_of_other_sections_lie_inside_the_vip_ranges() {
    let err = Config::parse("[docker]\nambassador = \"10.0.0.1\"\n").unwrap_err();
    assert!(
        matches!(
            &err,
            ConfigError::Value(SettingError {
                field: "docker.ambassador",
                reason: SettingProblem::OutsideVipRanges(_),
                ..
            })
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "invalid config: `docker.ambassador` = 10.0.0.1: must lie inside agent.vip_ranges (240.0.0.0/4)"
    );
}

#[test]
fn toml_syntax_errors_name_the_line() {
    let err = Config::parse("[[service]]\nname = \n").unwrap_err().to_string();
    assert!(err.starts_with("invalid config: TOML parse error at line 2"), "{err}");
}

#[test]
fn backends_take_weights_and_algorithms_are_checked() {
    let text = one_service(&format!(
        "{WEB}algorithm = \"weighted\"\naffinity_seconds = 30\nbackends = [{{ address = \"127.0.0.1:1\", weight = 3 }}, \"127.0.0.1:2\"]"
    ));
    let parsed = Config::parse(&text).unwrap();
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    let service = parsed.config.services.services.values().next().unwrap();
    assert_eq!(service.algorithm, viking_common::Algorithm::Weighted);
    assert_eq!(service.affinity_secs, 30);
    assert_eq!(service.backends.iter().map(|b| b.weight).collect::<Vec<_>>(), [3, 1]);
}

#[test]
fn bad_weights_and_affinity_are_named() {
    let err = refused(&one_service(&format!("{WEB}backends = [{{ address = \"127.0.0.1:1\", weight = 0 }}]")));
    assert_eq!((err.value.as_str(), &err.reason), ("\"127.0.0.1:1\"", &FieldError::Weight(0)));
    assert!(err.to_string().contains("`backends[0]` = \"127.0.0.1:1\": weight 0 must be 1..=1000"), "{err}");
    let err = refused(&one_service(&format!("{WEB}backends = [{{ addr = \"127.0.0.1:1\" }}]")));
    assert_eq!(err.field, "backends[0].addr");
    assert_eq!(
        reason_of(&one_service(&format!("{WEB}affinity_seconds = -1"))),
        refusal("affinity_seconds", "-1", FieldError::Affinity)
    );
    assert_eq!(FieldError::Affinity.to_string(), "must be 0..=86400");
    let err = refused(&one_service(&format!("{WEB}algorithm = \"fastest\"")));
    assert!(err.to_string().contains(r#"must be one of "round_robin", "random", "weighted", "least_conn""#), "{err}");
}

#[test]
fn outlier_ejection_is_on_by_default_and_set_per_service() {
    let parsed = Config::parse(&one_service(WEB)).unwrap();
    let service = parsed.config.services.services.values().next().unwrap();
    assert_eq!(service.outlier, crate::model::OutlierDetection::default());

    let text = one_service(&format!("{WEB}outlier = {{ consecutive_failures = 5, ejection_seconds = 2 }}"));
    let parsed = Config::parse(&text).unwrap();
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    let outlier = parsed.config.services.services.values().next().unwrap().outlier;
    assert_eq!((outlier.consecutive_failures, outlier.ejection_secs, outlier.max_ejection_secs), (5, 2, 300));
}

#[test]
fn bad_outlier_settings_are_named() {
    let outlier = |body: &str| reason_of(&one_service(&format!("{WEB}outlier = {body}")));
    let invalid = |key: &str, problem| FieldError::Outlier(OutlierError { key: key.into(), problem });
    let percent = OutlierProblem::OutOfRange { min: 0, max: 100, off_at_zero: false };
    assert_eq!(
        outlier("{ max_ejection_percent = 150 }"),
        refusal("outlier.max_ejection_percent", "150", invalid("max_ejection_percent", percent))
    );
    let err = refused(&one_service(&format!("{WEB}outlier = {{ max_ejection_percent = 150 }}")));
    assert!(
        err.to_string().contains("`outlier.max_ejection_percent` = 150: must be 0..=100 (service skipped)"),
        "{err}"
    );
    assert_eq!(
        outlier("{ ejection_seconds = \"10s\" }"),
        refusal("outlier.ejection_seconds", "\"10s\"", FieldError::NotAnInteger)
    );
    assert_eq!(
        outlier("{ interval = 1 }"),
        refusal("outlier.interval", "1", invalid("interval", OutlierProblem::UnknownKey))
    );
    assert_eq!(
        outlier("{ ejection_seconds = 600 }"),
        refusal(
            "outlier.max_ejection_seconds",
            "(default)",
            invalid("max_ejection_seconds", OutlierProblem::ShorterThanFirst(600))
        )
    );
    assert_eq!(outlier("3"), refusal("outlier", "3", FieldError::NotAnOutlierTable));
}
