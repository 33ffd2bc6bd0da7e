//! The targets for Viking, checked against this run's measurements only.

use crate::{results::Results, setups::Setup};

/// Viking's new-connection rate must reach this fraction of direct's.
pub const MIN_RATIO: f64 = 0.98;
/// "Flat": every sweep point's ratio within this distance of the first point's.
pub const FLAT_TOLERANCE: f64 = 0.03;
/// Viking's connect4 may cost at most this multiple of the baseline program's.
pub const MAX_COST_FACTOR: f64 = 1.5;

/// One target and how this run did against it.
#[derive(Clone, Debug)]
pub struct Verdict {
    /// The target, in words.
    pub target: String,
    /// What was measured, in words.
    pub measured: String,
    /// Whether every measured point meets it; `None` when nothing could be measured.
    pub met: Option<bool>,
}

/// Checks every target.
pub fn check(results: &Results) -> Vec<Verdict> {
    vec![ratio(results), flat(results), ahead(results), cost(results)]
}

/// Viking ≥ 0.98× direct on new connections, at every size.
fn ratio(results: &Results) -> Verdict {
    let mut shown = Vec::new();
    let mut met = None;
    for point in &results.points {
        match point.ratio(Setup::Viking) {
            Some(r) => {
                shown.push(format!("{} svc: {r:.3}×", point.services));
                met = Some(met.unwrap_or(true) && r >= MIN_RATIO);
            }
            None => {
                shown.push(format!("{} svc: not measured", point.services));
                met = Some(false);
            }
        }
    }
    Verdict { target: format!("Viking ≥ {MIN_RATIO}× direct on new connections"), measured: shown.join(", "), met }
}

/// Flat from the smallest to the largest number of services.
fn flat(results: &Results) -> Verdict {
    let ratios: Vec<(u32, Option<f64>)> = results.points.iter().map(|p| (p.services, p.ratio(Setup::Viking))).collect();
    let target = format!("flat over the sweep (every ratio within ±{FLAT_TOLERANCE} of the 1st point's)");
    let Some((first_services, Some(first))) = ratios.first().copied() else {
        return Verdict { target, measured: "first point not measured".into(), met: None };
    };
    let worst =
        ratios.iter().filter_map(|(s, r)| r.map(|r| (*s, r - first))).max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()));
    let missing = ratios.iter().any(|(_, r)| r.is_none());
    let measured = match worst {
        Some((services, delta)) => format!("largest change from {first_services} svc: {delta:+.3} at {services} svc"),
        None => "no point measured".into(),
    };
    let met = worst.map(|(_, delta)| delta.abs() <= FLAT_TOLERANCE && !missing);
    Verdict { target, measured: if missing { format!("{measured}; some points not measured") } else { measured }, met }
}

/// Ahead of iptables DNAT and HAProxy at every size.
fn ahead(results: &Results) -> Verdict {
    let haproxy = results.points.iter().find_map(|p| p.ratio(Setup::Haproxy));
    let mut behind = Vec::new();
    let mut compared = 0;
    for point in &results.points {
        let Some(viking) = point.ratio(Setup::Viking) else {
            behind.push(format!("{} svc: Viking not measured", point.services));
            continue;
        };
        if let Some(iptables) = point.ratio(Setup::Iptables) {
            compared += 1;
            if viking <= iptables {
                behind.push(format!("{} svc: iptables {iptables:.3}× ≥ Viking {viking:.3}×", point.services));
            }
        }
        if let Some(haproxy) = haproxy {
            compared += 1;
            if viking <= haproxy {
                behind.push(format!("{} svc: HAProxy {haproxy:.3}× ≥ Viking {viking:.3}×", point.services));
            }
        }
    }
    let measured = if behind.is_empty() { format!("ahead in all {compared} comparisons") } else { behind.join("; ") };
    Verdict {
        target: "ahead of iptables DNAT and HAProxy at every size".into(),
        measured,
        met: (compared > 0).then_some(behind.is_empty()),
    }
}

/// connect4 cost per call within 1.5× of the baseline program's.
fn cost(results: &Results) -> Verdict {
    let mut shown = Vec::new();
    let mut met = None;
    for point in &results.points {
        if let (Some(viking), Some(baseline)) = (point.cost.viking_connect4, point.cost.baseline) {
            let factor = viking / baseline;
            shown.push(format!("{} svc: {viking:.0}/{baseline:.0} ns = {factor:.2}×", point.services));
            met = Some(met.unwrap_or(true) && factor <= MAX_COST_FACTOR);
        }
    }
    Verdict {
        target: format!("connect4 cost per call ≤ {MAX_COST_FACTOR}× the baseline program's"),
        measured: if shown.is_empty() { "not measured".into() } else { shown.join(", ") },
        met,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::results::{Cost, Point, Sample};

    fn point(services: u32, direct: f64, viking: f64, iptables: f64) -> Point {
        let sample = |v| Ok(Sample { values: vec![v] });
        Point {
            services,
            connections: vec![
                (Setup::Direct, sample(direct)),
                (Setup::Viking, sample(viking)),
                (Setup::Iptables, sample(iptables)),
            ],
            viking_apply: Ok(Duration::ZERO),
            iptables_install: Ok(Duration::ZERO),
            cost: Cost { viking_connect4: Some(400.0), baseline: Some(300.0), ..Cost::default() },
        }
    }

    #[test]
    fn a_drop_below_the_ratio_is_a_miss_and_named() {
        let results =
            Results { points: vec![point(1, 100.0, 99.0, 70.0), point(1000, 100.0, 90.0, 20.0)], ..Results::default() };
        let verdicts = check(&results);
        assert_eq!(verdicts[0].met, Some(false));
        assert!(verdicts[0].measured.contains("1000 svc: 0.900×"));
        assert_eq!(verdicts[1].met, Some(false), "0.99 -> 0.90 is not flat");
        assert_eq!(verdicts[2].met, Some(true));
        assert_eq!(verdicts[3].met, Some(true), "400/300 = 1.33");
    }
}
