//! SVG plots of a run (plotters' SVG backend: text is emitted as SVG `<text>`, so no system
//! fonts are needed to draw them).

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use plotters::prelude::*;

use crate::report::Results;

/// A named series of (x, y) points.
type Series = (String, Vec<(f64, f64)>);

const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// Axis tick labels with as many decimals as their magnitude needs.
fn tick(v: &f64) -> String {
    let a = v.abs();
    if a >= 100.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Draws line series (with dots when a series has few points) on linear or log-x axes.
fn lines(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
    log_x: bool,
) -> anyhow::Result<()> {
    let err = |e: &dyn std::fmt::Display| anyhow!("plot {}: {e}", path.display());
    let pts = || series.iter().flat_map(|(_, v)| v.iter());
    let xmax = pts().map(|p| p.0).fold(0.0_f64, f64::max).max(1e-9) * 1.05;
    let xmin = pts().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let ymax = pts().map(|p| p.1).fold(0.0_f64, f64::max).max(1e-9) * 1.08;
    let root = SVGBackend::new(path, (860, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(80);
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(x_desc)
                .y_desc(y_desc)
                .label_style(("sans-serif", 13))
                .x_label_formatter(&tick)
                .y_label_formatter(&tick)
                .draw()
                .map_err(|e| err(&e))?;
            for (i, (name, v)) in series.iter().enumerate() {
                let color = COLORS[i % COLORS.len()];
                chart
                    .draw_series(LineSeries::new(v.iter().copied(), color.stroke_width(2)))
                    .map_err(|e| err(&e))?
                    .label(name.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
                if v.len() <= 12 {
                    chart
                        .draw_series(v.iter().map(|&p| Circle::new(p, 4, color.filled())))
                        .map_err(|e| err(&e))?;
                }
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .label_font(("sans-serif", 13))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(|e| err(&e))?;
        }};
    }
    if log_x {
        let lo = if xmin.is_finite() && xmin > 0.0 {
            xmin / 1.5
        } else {
            1.0
        };
        draw!(
            builder
                .build_cartesian_2d((lo..xmax * 1.5).log_scale(), 0.0..ymax)
                .map_err(|e| err(&e))?
        );
    } else {
        draw!(
            builder
                .build_cartesian_2d(0.0..xmax, 0.0..ymax)
                .map_err(|e| err(&e))?
        );
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// Column `i` of a curve as (ms, entries).
fn column(curve: &[crate::cluster::Sample], i: usize) -> Vec<(f64, f64)> {
    curve
        .iter()
        .filter_map(|(t, c)| c.get(i).map(|&n| (*t, n as f64)))
        .collect()
}

/// Draws every plot the results allow into `dir`; returns the files written.
///
/// # Errors
/// A plot could not be drawn or written.
pub fn all(r: &Results, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    if let Some(b) = &r.bulk {
        let mut series: Vec<Series> = (0..3)
            .map(|i| {
                let role = if i == 0 { "origin" } else { "replica" };
                (format!("pidmesh node {i} ({role})"), column(&b.curve, i))
            })
            .collect();
        let pg = r
            .erlang
            .as_ref()
            .and_then(|o| o.result.as_ref())
            .and_then(|e| e.pg_curve.as_ref());
        if let Some(curve) = pg {
            for (col, label) in [(1, "pg node 2"), (2, "pg node 3")] {
                let v: Vec<(f64, f64)> = curve
                    .iter()
                    .filter_map(|row| Some((*row.first()?, *row.get(col)?)))
                    .collect();
                series.push((label.to_string(), v));
            }
        }
        let ractor = r.ractor.as_ref().and_then(|o| o.result.as_ref());
        if let Some(curve) = ractor.and_then(|x| x.curve.as_ref()) {
            for (col, label) in [(1, "ractor pg node 1"), (2, "ractor pg node 2")] {
                let v: Vec<(f64, f64)> = curve
                    .iter()
                    .filter_map(|row| Some((*row.first()?, *row.get(col)?)))
                    .collect();
                series.push((label.to_string(), v));
            }
        }
        let p = dir.join("convergence.svg");
        lines(
            &p,
            &format!(
                "{} registrations on one node: entries visible per node",
                b.n
            ),
            "ms since the first registration",
            "entries visible",
            &series,
            false,
        )?;
        written.push(p);
    }
    if let Some(l) = &r.latency {
        let mut v = l.samples_ms.clone();
        v.sort_by(f64::total_cmp);
        let n = v.len().max(1) as f64;
        let cdf: Vec<(f64, f64)> = v
            .iter()
            .enumerate()
            .map(|(i, &x)| (x, (i + 1) as f64 / n))
            .collect();
        let p = dir.join("latency_cdf.svg");
        lines(
            &p,
            &format!(
                "register → visible on all 3 nodes ({} registrations, one at a time)",
                l.n
            ),
            "ms",
            "fraction of registrations",
            &[("pidmesh".to_string(), cdf)],
            false,
        )?;
        written.push(p);
    }
    if let Some(c) = &r.catchup {
        let p = dir.join("catchup.svg");
        lines(
            &p,
            &format!("a new node catching up with {} entries", c.n),
            "ms since the new node started",
            "entries held by the new node",
            &[("pidmesh newcomer".to_string(), column(&c.curve, 0))],
            false,
        )?;
        written.push(p);
    }
    if let Some(sc) = &r.scale {
        let conv: Vec<(f64, f64)> = sc
            .points
            .iter()
            .filter_map(|p| Some((p.nodes as f64, p.converge_secs? * 1e3)))
            .collect();
        if !conv.is_empty() {
            let p = dir.join("scale.svg");
            lines(
                &p,
                "simulator: registrations on every node → all entries everywhere",
                "nodes (log scale)",
                "ms of virtual time",
                &[("pidmesh (simulated, lan preset)".to_string(), conv)],
                true,
            )?;
            written.push(p);
        }
    }
    written.extend(lookup(r, dir)?);
    Ok(written)
}

/// `lookup.svg`: ns per random lookup against registry size, one line per side.
fn lookup(r: &Results, dir: &Path) -> anyhow::Result<Option<PathBuf>> {
    let Some(l) = &r.lookup else { return Ok(None) };
    type Pick = fn(&crate::scenario::lookup::LookupPoint) -> f64;
    let sides: [(&str, Pick); 6] = [
        ("pidmesh lookup (owned Entry)", |p| p.pidmesh_owned_ns),
        ("pidmesh with_lookup (borrowed)", |p| p.pidmesh_borrowed_ns),
        ("std HashMap get (borrowed)", |p| p.std_borrowed_ns),
        ("std HashMap get + clone", |p| p.std_cloned_ns),
        ("std HashMap behind an RwLock", |p| {
            p.std_locked_ns.unwrap_or(f64::NAN)
        }),
        ("DashMap get", |p| p.dashmap_ns.unwrap_or(f64::NAN)),
    ];
    let series: Vec<Series> = sides
        .iter()
        .map(|(label, pick)| {
            let v = l
                .points
                .iter()
                .map(|p| (p.entries as f64, pick(p)))
                .filter(|(_, ns)| ns.is_finite())
                .collect();
            ((*label).to_string(), v)
        })
        .filter(|(_, v): &Series| !v.is_empty())
        .collect();
    let p = dir.join("lookup.svg");
    lines(
        &p,
        "random unique-name lookup, same names in the same scattered order",
        "names in the registry (log scale)",
        "ns per lookup",
        &series,
        true,
    )?;
    Ok(Some(p))
}
