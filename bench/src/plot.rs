//! The figures as line charts, SVG and PNG (plotters). PNG text needs a
//! TrueType font at run time (DejaVu Sans, Debian `fonts-dejavu-core`).

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::model::{Config, Results, Workload};
use super::report::dual_theoretical;

const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

/// Registers a font for the plots' text (once).
pub fn init_font() -> Result<()> {
    static DONE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let path = FONTS
            .iter()
            .find(|p| Path::new(p).exists())
            .ok_or("no TrueType font found (install fonts-dejavu-core)")?;
        let bytes: &'static [u8] = Box::leak(
            std::fs::read(path)
                .map_err(|e| e.to_string())?
                .into_boxed_slice(),
        );
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| format!("{path}: not a usable font"))
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

/// Plot size, pixels.
const W: u32 = 900;
const H: u32 = 560;

/// One line of a chart.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

pub struct Chart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub series: Vec<Series>,
    pub log_y: bool,
    /// Formats x-axis tick labels.
    pub x_fmt: fn(&f64) -> String,
}

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, c: &Chart) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("drawing: {e:?}");
    root.fill(&WHITE).map_err(e)?;
    let pts = c.series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        bail!("nothing to plot");
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let mut b = ChartBuilder::on(&root);
    b.caption(c.title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(75);
    let xr = x0..x1 * 1.02;
    if c.log_y {
        // The percentile chart: whole nines on the x axis (90 %, 99 %, …).
        let nines = x1.ceil().max(1.0);
        let lo = (y0.max(1.0) / 1.5).max(1.0);
        let mut ch = b
            .build_cartesian_2d(0.0..nines, (lo..y1 * 1.5).log_scale())
            .map_err(e)?;
        ch.configure_mesh()
            .x_labels(nines as usize + 1)
            .x_desc(c.x_label)
            .y_desc(c.y_label)
            .x_label_formatter(&c.x_fmt)
            .y_label_formatter(&|v| format!("{v:.0}"))
            .draw()
            .map_err(e)?;
        series(&mut ch, c, SeriesLabelPosition::UpperLeft).map_err(e)?;
    } else {
        let mut ch = b.build_cartesian_2d(xr, 0.0..y1 * 1.1).map_err(e)?;
        ch.configure_mesh()
            .x_desc(c.x_label)
            .y_desc(c.y_label)
            .x_label_formatter(&c.x_fmt)
            .draw()
            .map_err(e)?;
        series(&mut ch, c, SeriesLabelPosition::UpperRight).map_err(e)?;
    }
    root.present().map_err(e)?;
    Ok(())
}

/// Every series of `c` as a line with dots, and the legend at `legend`.
fn series<'a, DB: DrawingBackend + 'a, X, Y>(
    ch: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    c: &Chart,
    legend: SeriesLabelPosition,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for (i, s) in c.series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        ch.draw_series(LineSeries::new(
            s.points.iter().copied(),
            color.stroke_width(2),
        ))?
        .label(s.name.clone())
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        ch.draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
    }
    ch.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(legend)
        .draw()
}

/// Writes `dir/name.svg` and `dir/name.png`.
pub fn write(dir: &Path, name: &str, c: &Chart) -> Result<()> {
    init_font()?;
    let svg = dir.join(format!("{name}.svg"));
    draw(SVGBackend::new(&svg, (W, H)).into_drawing_area(), c)
        .with_context(|| format!("{}", svg.display()))?;
    let png = dir.join(format!("{name}.png"));
    let mut rgb = vec![0u8; (W * H * 3) as usize];
    draw(
        BitMapBackend::with_buffer(&mut rgb, (W, H)).into_drawing_area(),
        c,
    )
    .with_context(|| format!("{}", png.display()))?;
    write_png(&png, &rgb).with_context(|| format!("writing {}", png.display()))
}

/// Encodes an RGB buffer of W × H as PNG.
fn write_png(path: &Path, rgb: &[u8]) -> Result<()> {
    let f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut enc = png::Encoder::new(f, W, H);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_compression(png::Compression::Best);
    enc.set_adaptive_filter(png::AdaptiveFilterType::Adaptive);
    let mut w = enc.write_header()?;
    w.write_image_data(rgb)?;
    w.finish()?;
    Ok(())
}

fn size_kb(v: &f64) -> String {
    format!("{v:.0}")
}

/// The nines of a percentile: 90 → 1, 99 → 2, 99.9 → 3.
fn nines(p: f64) -> f64 {
    -(1.0 - (p / 100.0).min(0.999_999)).log10()
}

fn nines_label(v: &f64) -> String {
    let p = 100.0 * (1.0 - 10f64.powf(-v));
    if p < 99.0 {
        format!("{p:.0}%")
    } else {
        format!("{}%", (p * 1000.0).round() / 1000.0)
    }
}

/// Every figure the results have data for; returns the names written.
pub fn all(r: &Results, dir: &Path) -> Result<Vec<String>> {
    let mut written = Vec::new();
    let kbs = |s: u64| s as f64 / 1024.0;
    let gen = r.peak_sizes(Workload::Generate);
    let files = r.peak_sizes(Workload::Files);
    let lat_sizes = r.latency_sizes();
    let line = |name: &str, f: &dyn Fn(u64) -> Option<f64>, sizes: &[u64]| Series {
        name: name.into(),
        points: sizes
            .iter()
            .filter_map(|&s| f(s).map(|v| (kbs(s), v)))
            .collect(),
    };
    let keep = |v: Vec<Series>| {
        v.into_iter()
            .filter(|s| !s.points.is_empty())
            .collect::<Vec<_>>()
    };
    let mut charts: Vec<(&str, Chart)> = Vec::new();
    let cpu = |c: Config, node: &'static str| {
        move |s: u64| {
            r.peak(c, Workload::Generate, s)
                .and_then(|p| p.cpu_us_per_request(node))
        }
    };
    charts.push((
        "fig2-cpu-per-request",
        Chart {
            title: "Fig. 2: CPU time per request, generate",
            x_label: "reply size (KB)",
            y_label: "CPU µs per request",
            series: keep(vec![
                line("unreplicated", &cpu(Config::Simplex, "n1"), &gen),
                line("duplex primary", &cpu(Config::Duplex, "n1"), &gen),
                line("duplex backup", &cpu(Config::Duplex, "n2"), &gen),
                line(
                    "duplex total",
                    &|s| Some(cpu(Config::Duplex, "n1")(s)? + cpu(Config::Duplex, "n2")(s)?),
                    &gen,
                ),
            ]),
            log_y: false,
            x_fmt: size_kb,
        },
    ));
    let peak = |c: Config, w: Workload| move |s: u64| r.peak(c, w, s).map(|p| p.wrk.rps);
    charts.push((
        "fig3-generate-peak",
        Chart {
            title: "Fig. 3: peak throughput, generate",
            x_label: "reply size (KB)",
            y_label: "requests/s",
            series: keep(vec![
                line(
                    "unreplicated",
                    &peak(Config::Simplex, Workload::Generate),
                    &gen,
                ),
                line(
                    "2 × unreplicated",
                    &|s| peak(Config::Simplex, Workload::Generate)(s).map(|v| 2.0 * v),
                    &gen,
                ),
                line("duplex", &peak(Config::Duplex, Workload::Generate), &gen),
                line(
                    "dual-role",
                    &peak(Config::DualRole, Workload::Generate),
                    &gen,
                ),
                line("dual-role theoretical", &|s| dual_theoretical(r, s), &gen),
            ]),
            log_y: false,
            x_fmt: size_kb,
        },
    ));
    charts.push((
        "fig4-files-peak",
        Chart {
            title: "Fig. 4: peak throughput, cached files",
            x_label: "reply size (KB)",
            y_label: "requests/s",
            series: keep(
                [
                    Config::Simplex,
                    Config::Duplex,
                    Config::DuplexMi,
                    Config::Static,
                    Config::SyncStatic,
                ]
                .iter()
                .map(|&c| line(c.label(), &peak(c, Workload::Files), &files))
                .collect(),
            ),
            log_y: false,
            x_fmt: size_kb,
        },
    ));
    let lat = |c: Config, w: Workload| move |s: u64| r.latency(c, w, s).map(|p| p.wrk.mean_us);
    charts.push((
        "fig5-latency",
        Chart {
            title: "Fig. 5: mean latency, one outstanding request",
            x_label: "reply size (KB)",
            y_label: "mean latency (µs)",
            series: keep(vec![
                line(
                    "unreplicated (generate)",
                    &lat(Config::Simplex, Workload::Generate),
                    &lat_sizes,
                ),
                line(
                    "duplex (generate)",
                    &lat(Config::Duplex, Workload::Generate),
                    &lat_sizes,
                ),
                line(
                    "unreplicated (files)",
                    &lat(Config::Simplex, Workload::Files),
                    &lat_sizes,
                ),
                line(
                    "duplex (files)",
                    &lat(Config::Duplex, Workload::Files),
                    &lat_sizes,
                ),
                line(
                    "reply overhead (unreplicated + duplex − static)",
                    &|s| {
                        let u = lat(Config::Simplex, Workload::Files)(s)?;
                        Some(
                            u + lat(Config::Duplex, Workload::Files)(s)?
                                - lat(Config::Static, Workload::Files)(s)?,
                        )
                    },
                    &lat_sizes,
                ),
                line("static", &lat(Config::Static, Workload::Files), &lat_sizes),
                line(
                    "sync-static",
                    &lat(Config::SyncStatic, Workload::Files),
                    &lat_sizes,
                ),
            ]),
            log_y: false,
            x_fmt: size_kb,
        },
    ));
    charts.push((
        "fig6-latency-distribution",
        Chart {
            title: "Fig. 6: latency distribution, 5 KB files, fixed rate",
            x_label: "percentile",
            y_label: "latency (µs, log scale)",
            series: r
                .open_loop
                .iter()
                .map(|o| Series {
                    name: format!("{} ({:.0} req/s)", o.config.label(), o.rate),
                    points: o
                        .summary
                        .distribution
                        .iter()
                        .filter(|(p, _)| *p < 100.0)
                        .map(|&(p, v)| (nines(p), v))
                        .collect(),
                })
                .filter(|s| !s.points.is_empty())
                .collect(),
            log_y: true,
            x_fmt: nines_label,
        },
    ));
    for (name, c) in charts {
        if c.series.is_empty() {
            continue;
        }
        write(dir, name, &c)?;
        written.push(name.to_owned());
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nines_axis() {
        assert!((nines(90.0) - 1.0).abs() < 1e-9);
        assert!((nines(99.9) - 3.0).abs() < 1e-9);
        assert_eq!(nines_label(&2.0), "99%");
        assert_eq!(nines_label(&3.0), "99.9%");
        assert_eq!(nines_label(&0.0), "0%");
    }
}
