//! The plots of the reports: new connections per second as a ratio to direct, by number
//! of services, for the setups whose cost may grow with it (Viking, the baseline program,
//! iptables), with direct and HAProxy as reference lines; and the time from a Consul
//! change to the kernel, by number of services.
//!
//! Text is drawn with ab_glyph from Debian's DejaVu Sans (package `fonts-dejavu-core`,
//! installed by `cargo xtask bench`), read at run time: no fontconfig, no font in the repo.

use std::path::Path;

use anyhow::{Context as _, anyhow};
use plotters::{
    prelude::*,
    style::{FontStyle, register_font},
};

use crate::{
    consul::{ConsulPoint, Transport},
    results::Results,
    setups::Setup,
};

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
const SIZE: (u32, u32) = (960, 600);

/// Registers the font; each subcommand draws one plot, so this runs once per process.
fn load_font() -> anyhow::Result<()> {
    let font = std::fs::read(FONT).with_context(|| format!("reading {FONT} (Debian package fonts-dejavu-core)"))?;
    // The font registry keeps `'static` references.
    register_font("sans-serif", FontStyle::Normal, Box::leak(font.into_boxed_slice()))
        .map_err(|_| anyhow!("{FONT} is not a usable TrueType font"))
}

/// Draws the new-connections plot to `path` (PNG).
pub fn new_connections(results: &Results, path: &Path) -> anyhow::Result<()> {
    load_font()?;

    let series = |setup: Setup| -> Vec<(f64, f64)> {
        results.points.iter().filter_map(|p| Some((f64::from(p.services), p.ratio(setup)?))).collect()
    };
    let lines = [
        (Setup::Viking, RGBColor(0, 114, 178)),
        (Setup::Baseline, RGBColor(0, 158, 115)),
        (Setup::Iptables, RGBColor(213, 94, 0)),
    ];
    let haproxy = results.points.iter().find_map(|p| p.ratio(Setup::Haproxy));
    let max_services = results.points.iter().map(|p| f64::from(p.services)).fold(1.0, f64::max);
    let top = lines.iter().flat_map(|(s, _)| series(*s)).map(|(_, r)| r).chain(haproxy).fold(1.0, f64::max) + 0.1;

    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("New TCP connections per second, ratio to direct", ("sans-serif", 26))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d((0.8..max_services * 1.5).log_scale(), 0.0..top)?;
    chart
        .configure_mesh()
        .x_desc("services installed")
        .y_desc("ratio to direct")
        .x_label_formatter(&|x| format_services(*x))
        .y_label_formatter(&|y| format!("{y:.1}"))
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 18))
        .draw()?;

    let x_range = [0.8, max_services * 1.5];
    chart
        .draw_series(LineSeries::new(x_range.map(|x| (x, 1.0)), BLACK.stroke_width(2)))?
        .label("direct (1.0)")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK.stroke_width(2)));
    if let Some(ratio) = haproxy {
        let grey = RGBColor(120, 120, 120);
        chart
            .draw_series(LineSeries::new(x_range.map(|x| (x, ratio)), grey.stroke_width(2)))?
            .label(format!("HAProxy ({ratio:.2}, any number of services)"))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], grey.stroke_width(2)));
    }
    for (setup, color) in lines {
        let points = series(setup);
        if points.is_empty() {
            continue;
        }
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(3)))?
            .label(setup.label())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(3)));
        chart.draw_series(points.into_iter().map(|p| Circle::new(p, 5, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .label_font(("sans-serif", 16))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present().with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Draws change → kernel p50 and p99 by number of services, per transport, to `path`.
pub fn consul_changes(points: &[ConsulPoint], path: &Path) -> anyhow::Result<()> {
    load_font()?;
    let quantile = |p: &ConsulPoint, q: f64| {
        let mut sorted = p.changes.clone();
        sorted.sort();
        let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
        sorted.get(index).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let series = |transport: Transport, q: f64| -> Vec<(f64, f64)> {
        points.iter().filter(|p| p.transport == transport).map(|p| (f64::from(p.services), quantile(p, q))).collect()
    };
    let max_services = points.iter().map(|p| f64::from(p.services)).fold(1.0, f64::max);
    let top = points.iter().map(|p| quantile(p, 0.99)).fold(1.0, f64::max) * 1.2;
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("A Consul change to the kernel map (ms)", ("sans-serif", 26))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d((500.0..max_services * 1.5).log_scale(), 0.0..top)?;
    chart
        .configure_mesh()
        .x_desc("services in Consul (3 instances each)")
        .y_desc("ms from the registering HTTP call")
        .x_label_formatter(&|x| format_services(*x))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 18))
        .draw()?;
    let lines = [
        (Transport::Https, 0.99, RGBColor(0, 114, 178), "HTTPS (HTTP/2) p99"),
        (Transport::Https, 0.5, RGBColor(86, 180, 233), "HTTPS (HTTP/2) p50"),
        (Transport::Http, 0.99, RGBColor(213, 94, 0), "HTTP/1.1 p99"),
        (Transport::Http, 0.5, RGBColor(230, 159, 0), "HTTP/1.1 p50"),
    ];
    for (transport, q, color, label) in lines {
        let points = series(transport, q);
        if points.is_empty() {
            continue;
        }
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(3)))?
            .label(label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(3)));
        chart.draw_series(points.into_iter().map(|p| Circle::new(p, 5, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 16))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present().with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// `1000.0` → `1k`, `100000.0` → `100k`.
fn format_services(x: f64) -> String {
    if x >= 1000.0 { format!("{:.0}k", x / 1000.0) } else { format!("{x:.0}") }
}
