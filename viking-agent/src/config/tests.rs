//! Every rejection of the config file, with the message a user sees.

use super::*;

fn one_service(body: &str) -> String {
    format!("[[service]]\n{body}\n")
}

/// Parses and returns the single error's text.
fn error_of(text: &str) -> String {
    let parsed = Config::parse(text).unwrap_or_else(|err| panic!("file rejected as a whole: {err}"));
    assert_eq!(parsed.errors.len(), 1, "{:?}", parsed.errors);
    parsed.errors[0].to_string()
}

const WEB: &str = "name = \"web\"\nvip = \"240.0.0.10\"\nport = 80\n";

#[test]
fn a_valid_file_parses_with_defaults() {
    let parsed = Config::parse(&one_service(&format!("{WEB}backends = [\"127.0.0.1:9001\", \"[::1]:9\"]"))).unwrap();
    // The IPv6 backend does not match the IPv4 VIP.
    assert_eq!(parsed.errors.len(), 1);
    let service = parsed.config.services.services.values().next().unwrap();
    assert_eq!(service.frontend.protocol, crate::model::Protocol::Tcp);
    assert_eq!(service.algorithm, viking_common::Algorithm::RoundRobin);
    assert_eq!(service.backends, [crate::model::BackendSpec::new("127.0.0.1:9001".parse().unwrap())]);
    assert_eq!(parsed.config.limits, Limits::default());
    assert_eq!(parsed.config.agent.vip_ranges, [default_vip_range()]);
}

#[test]
fn vip_outside_the_range_is_rejected() {
    let err = error_of(&one_service("name = \"web\"\nvip = \"10.0.0.1\"\nport = 80"));
    assert_eq!(
        err,
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
    assert!(
        error_of(&one_service("name = \"web\"\nvip = \"web.local\"\nport = 80"))
            .contains("`vip` = \"web.local\": not an IP address")
    );
}

#[test]
fn port_zero_and_out_of_range_are_rejected() {
    assert!(
        error_of(&one_service("name = \"web\"\nvip = \"240.0.0.10\"\nport = 0"))
            .contains("`port` = 0: must be 1..=65535")
    );
    assert!(error_of(&one_service("name = \"web\"\nvip = \"240.0.0.10\"\nport = 70000")).contains("`port` = 70000"));
    assert!(
        error_of(&one_service("name = \"web\"\nvip = \"240.0.0.10\"\nport = \"80\""))
            .contains("`port` = \"80\": must be an integer")
    );
}

#[test]
fn backend_that_is_a_vip_is_skipped() {
    let err = error_of(&one_service(&format!("{WEB}backends = [\"240.0.0.11:80\"]")));
    assert!(err.contains("`backends[0]` = \"240.0.0.11:80\": inside the VIP ranges"), "{err}");
    assert!(err.ends_with("(backend skipped)"), "{err}");
}

#[test]
fn backend_with_port_zero_or_bad_address_is_skipped() {
    assert!(
        error_of(&one_service(&format!("{WEB}backends = [\"127.0.0.1:0\"]"))).contains("port 0 is not a destination")
    );
    assert!(error_of(&one_service(&format!("{WEB}backends = [\"nonsense\"]"))).contains("not an `ip:port` address"));
    assert!(error_of(&one_service(&format!("{WEB}backends = [\"224.0.0.1:80\"]"))).contains("not a unicast address"));
    assert!(error_of(&one_service(&format!("{WEB}backends = [\"0.0.0.0:80\"]"))).contains("not a unicast address"));
    assert!(
        error_of(&one_service(&format!("{WEB}backends = [80]"))).contains("`backends[0]` = 80: must be \"ip:port\" or")
    );
}

#[test]
fn a_duplicate_backend_is_skipped_once() {
    let parsed = Config::parse(&one_service(&format!("{WEB}backends = [\"127.0.0.1:1\", \"127.0.0.1:1\"]"))).unwrap();
    assert!(parsed.errors[0].to_string().contains("listed twice"));
    assert_eq!(parsed.config.services.services.values().next().unwrap().backends.len(), 1);
}

#[test]
fn duplicate_frontend_is_rejected() {
    let text = format!("{}{}", one_service(WEB), one_service("name = \"web2\"\nvip = \"240.0.0.10\"\nport = 80"));
    let err = error_of(&text);
    assert!(
        err.starts_with(
            "service[1] \"web2\": `vip` = 240.0.0.10:80/tcp: duplicate frontend, already used by service \"web\""
        ),
        "{err}"
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
    assert!(error_of(&text).contains("service \"web\" already has VIP 240.0.0.10"));
    let text = format!("{}{}", one_service(WEB), one_service("name = \"api\"\nvip = \"240.0.0.10\"\nport = 81"));
    assert!(error_of(&text).contains("VIP already belongs to service \"web\""));
}

#[test]
fn too_many_backends_names_the_limit() {
    let backends: Vec<String> = (1..=3).map(|p| format!("\"127.0.0.1:{p}\"")).collect();
    let text = format!(
        "[limits]\nmax_backends_per_service = 2\n{}",
        one_service(&format!("{WEB}backends = [{}]", backends.join(",")))
    );
    let err = error_of(&text);
    assert!(err.contains("`backends` = 3 entries: more than limits.max_backends_per_service = 2"), "{err}");
}

#[test]
fn unknown_keys_are_rejected() {
    let err = error_of(&one_service(&format!("{WEB}backendz = []")));
    assert!(err.contains("`backendz` = []: unknown key; known keys: name, vip, port"), "{err}");
    let whole = Config::parse("[agnet]\nvip_ranges = []\n").unwrap_err().to_string();
    assert!(whole.contains("unknown field `agnet`"), "{whole}");
    let limits = Config::parse("[limits]\nmax_servics = 3\n").unwrap_err().to_string();
    assert!(limits.contains("unknown field `max_servics`"), "{limits}");
}

#[test]
fn missing_and_malformed_fields_are_named() {
    assert!(error_of(&one_service("vip = \"240.0.0.10\"\nport = 80")).contains("`name` = (missing): required"));
    assert!(error_of(&one_service("name = \"web\"\nport = 80")).contains("`vip` = (missing): required"));
    assert!(
        error_of(&one_service("name = \"bad name\"\nvip = \"240.0.0.10\"\nport = 80"))
            .contains("`name` = \"bad name\": may only contain")
    );
    assert!(
        error_of(&one_service(&format!("{WEB}protocol = \"sctp\"")))
            .contains("`protocol` = \"sctp\": must be \"tcp\" or \"udp\"")
    );
    assert!(error_of(&one_service(&format!("{WEB}algorithm = \"fastest\""))).contains("`algorithm` = \"fastest\""));
}

#[test]
fn family_mismatch_is_rejected() {
    assert!(
        error_of(&one_service(&format!("{WEB}backends = [\"[fd00::1]:80\"]")))
            .contains("address family differs from the VIP")
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
    let err = Config::parse("[limits]\nmax_services = 0\n").unwrap_err().to_string();
    assert_eq!(err, "invalid config: `limits.max_services` = 0: out of range 1..=16777216");
    let err = Config::parse("[agent]\nvip_ranges = []\n").unwrap_err().to_string();
    assert!(err.contains("agent.vip_ranges"), "{err}");
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
    let err = error_of(&one_service(&format!("{WEB}backends = [{{ address = \"127.0.0.1:1\", weight = 0 }}]")));
    assert!(err.contains("`backends[0]` = \"127.0.0.1:1\": weight 0 must be 1..=1000"), "{err}");
    let err = error_of(&one_service(&format!("{WEB}backends = [{{ addr = \"127.0.0.1:1\" }}]")));
    assert!(err.contains("`backends[0].addr`"), "{err}");
    let err = error_of(&one_service(&format!("{WEB}affinity_seconds = -1")));
    assert!(err.contains("`affinity_seconds` = -1: must be 0..=86400"), "{err}");
    let err = error_of(&one_service(&format!("{WEB}algorithm = \"fastest\"")));
    assert!(err.contains(r#"must be one of "round_robin", "random", "weighted", "least_conn""#), "{err}");
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
    let err = error_of(&one_service(&format!("{WEB}outlier = {{ max_ejection_percent = 150 }}")));
    assert!(err.contains("`outlier.max_ejection_percent` = 150: must be 0..=100 (service skipped)"), "{err}");
    let err = error_of(&one_service(&format!("{WEB}outlier = {{ ejection_seconds = \"10s\" }}")));
    assert!(err.contains("`outlier.ejection_seconds` = \"10s\": must be an integer"), "{err}");
    let err = error_of(&one_service(&format!("{WEB}outlier = {{ interval = 1 }}")));
    assert!(err.contains("`outlier.interval` = 1: unknown key; known keys: consecutive_failures"), "{err}");
    let err = error_of(&one_service(&format!("{WEB}outlier = {{ ejection_seconds = 600 }}")));
    assert!(
        err.contains("`outlier.max_ejection_seconds` = (default): must be at least ejection_seconds (600)"),
        "{err}"
    );
    let err = error_of(&one_service(&format!("{WEB}outlier = 3")));
    assert!(err.contains("`outlier` = 3: must be a table"), "{err}");
}
