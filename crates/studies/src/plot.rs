//! Figures: a thin layer over plotters for the one kind of chart the studies draw, theory lines
//! beside measured points with error bars, written as SVG. Every chart has its legend beside the
//! plot (never over the data), the Okabe–Ito colour-blind-safe palette, light grids, and log axes
//! labelled as powers of ten (10ᵏ, or m×10ᵏ between them).

use crate::output::{write_atomic, OutputError};
use plotters::coord::combinators::{LogCoord, WithKeyPoints};
use plotters::coord::ranged1d::{BoldPoints, LightPoints, Ranged};
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Style {
    /// A solid line (theory).
    Line,
    /// A dashed line (a second theory curve or reference).
    Dashed,
    /// A dotted line (a third curve in the same colour).
    Dotted,
    /// Markers, with error bars when given (measurements).
    Points,
}

/// One series: (x, y) points, optional symmetric error bars.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend entry.
    pub name: String,
    /// The (x, y) points, in drawing order.
    pub points: Vec<(f64, f64)>,
    /// Symmetric error-bar half-widths, one per point.
    pub err: Option<Vec<f64>>,
    /// How it is drawn.
    pub style: Style,
    /// Index into the palette; by default the series' position in the figure.
    pub colour: Option<usize>,
}

impl Series {
    /// A solid line through `points`.
    pub fn line(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self {
            name: name.into(),
            points,
            err: None,
            style: Style::Line,
            colour: None,
        }
    }
    /// A dashed line through `points`.
    pub fn dashed(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self {
            name: name.into(),
            points,
            err: None,
            style: Style::Dashed,
            colour: None,
        }
    }
    /// A dotted line through `points`.
    pub fn dotted(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self {
            style: Style::Dotted,
            ..Self::dashed(name, points)
        }
    }
    /// The series drawn in palette colour `k` (to give related series one colour).
    pub fn in_colour(mut self, k: usize) -> Self {
        self.colour = Some(k);
        self
    }
    /// Markers at `points`, with optional error-bar half-widths `err`.
    pub fn points(name: impl Into<String>, points: Vec<(f64, f64)>, err: Option<Vec<f64>>) -> Self {
        Self {
            name: name.into(),
            points,
            err,
            style: Style::Points,
            colour: None,
        }
    }
}

/// A chart.
#[derive(Debug, Clone)]
pub struct Figure {
    /// Title above the chart.
    pub title: String,
    /// Label of the x axis.
    pub x_label: String,
    /// Label of the y axis.
    pub y_label: String,
    /// The series, drawn in order.
    pub series: Vec<Series>,
    /// Logarithmic x axis.
    pub log_x: bool,
    /// Logarithmic y axis.
    pub log_y: bool,
}

impl Figure {
    /// An empty chart with linear axes.
    pub fn new(
        title: impl Into<String>,
        x_label: impl Into<String>,
        y_label: impl Into<String>,
    ) -> Self {
        Self {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            series: vec![],
            log_x: false,
            log_y: false,
        }
    }
    /// The chart with series `s` added.
    pub fn with(mut self, s: Series) -> Self {
        self.series.push(s);
        self
    }
    /// The chart with a logarithmic y axis.
    pub fn log_y(mut self) -> Self {
        self.log_y = true;
        self
    }
    /// The chart with both axes logarithmic.
    pub fn log_log(mut self) -> Self {
        self.log_x = true;
        self.log_y = true;
        self
    }

    /// Render to an SVG file (atomically).
    pub fn save_svg(&self, path: &Path) -> Result<PathBuf, OutputError> {
        let svg = self.to_svg().map_err(|msg| OutputError::Encode {
            path: path.to_path_buf(),
            msg,
        })?;
        write_atomic(path, svg.as_bytes())
    }

    fn ranges(&self) -> ((f64, f64), (f64, f64)) {
        let ok = |v: f64, log: bool| v.is_finite() && (!log || v > 0.0);
        let (mut x0, mut x1, mut y0, mut y1) = (
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
        );
        for s in &self.series {
            for (i, &(x, y)) in s.points.iter().enumerate() {
                let e = s.err.as_ref().map_or(0.0, |e| e[i].abs());
                for yy in [y - e, y + e] {
                    if ok(x, self.log_x) && ok(yy, self.log_y) {
                        x0 = x0.min(x);
                        x1 = x1.max(x);
                        y0 = y0.min(yy);
                        y1 = y1.max(yy);
                    }
                }
            }
        }
        if !x0.is_finite() {
            return ((0.0, 1.0), (0.0, 1.0));
        }
        let pad = |a: f64, b: f64, log: bool| {
            if log {
                (a / 1.3, b * 1.3)
            } else {
                let d = if b > a {
                    0.05 * (b - a)
                } else {
                    0.5 * a.abs().max(1.0)
                };
                (a - d, b + d)
            }
        };
        (pad(x0, x1, self.log_x), pad(y0, y1, self.log_y))
    }

    fn to_svg(&self) -> Result<String, String> {
        let mut buf = String::new();
        {
            let root =
                SVGBackend::with_string(&mut buf, (720 + LEGEND_WIDTH, 480)).into_drawing_area();
            root.fill(&WHITE).map_err(|e| e.to_string())?;
            let (plot, legend) = root.split_horizontally(720);
            let ((x0, x1), (y0, y1)) = self.ranges();
            let (log_x, log_y) = (self.log_x, self.log_y);
            // Within less than a decade every tick keeps its label; over wider ranges only 1, 2, 5.
            let (sparse_x, sparse_y) = (x1 / x0 >= 10.0, y1 / y0 >= 10.0);
            // A tick at zero computed as a rounding residue (e.g. −2.2e−16) is labelled 0.
            let snap = |v: f64, lo: f64, hi: f64| {
                if v.abs() < 1e-9 * (hi - lo).abs() {
                    0.0
                } else {
                    v
                }
            };
            let x_fmt = move |v: &f64| tick_label(snap(*v, x0, x1), log_x, sparse_x);
            let y_fmt = move |v: &f64| tick_label(snap(*v, y0, y1), log_y, sparse_y);
            macro_rules! draw {
                ($xr:expr, $yr:expr) => {{
                    let mut chart = ChartBuilder::on(&plot)
                        .caption(&self.title, ("sans-serif", 18))
                        .margin(12)
                        .x_label_area_size(40)
                        .y_label_area_size(64)
                        .build_cartesian_2d($xr, $yr)
                        .map_err(|e| e.to_string())?;
                    chart
                        .configure_mesh()
                        .x_desc(&self.x_label)
                        .y_desc(&self.y_label)
                        .x_label_formatter(&x_fmt)
                        .y_label_formatter(&y_fmt)
                        .bold_line_style(RGBColor(225, 225, 225))
                        .light_line_style(RGBColor(246, 246, 246))
                        .max_light_lines(4)
                        .draw()
                        .map_err(|e| e.to_string())?;
                    for (k, s) in self.series.iter().enumerate() {
                        let color = colour(s.colour.unwrap_or(k));
                        let pts: Vec<(f64, f64)> = s
                            .points
                            .iter()
                            .copied()
                            .filter(|&(x, y)| {
                                x.is_finite()
                                    && y.is_finite()
                                    && (!self.log_x || x > 0.0)
                                    && (!self.log_y || y > 0.0)
                            })
                            .collect();
                        let anno = match s.style {
                            Style::Line => {
                                chart.draw_series(LineSeries::new(pts, color.stroke_width(2)))
                            }
                            Style::Dashed | Style::Dotted => {
                                let (on, off) = if s.style == Style::Dashed {
                                    (6, 4)
                                } else {
                                    (2, 3)
                                };
                                chart.draw_series(DashedLineSeries::new(
                                    pts,
                                    on,
                                    off,
                                    color.stroke_width(2),
                                ))
                            }
                            Style::Points => {
                                if let Some(err) = &s.err {
                                    chart
                                        .draw_series(
                                            s.points
                                                .iter()
                                                .zip(err)
                                                .filter(|((x, y), e)| {
                                                    x.is_finite()
                                                        && y.is_finite()
                                                        && e.is_finite()
                                                        && (!self.log_y || y - e.abs() > 0.0)
                                                })
                                                .map(|(&(x, y), &e)| {
                                                    ErrorBar::new_vertical(
                                                        x,
                                                        y - e.abs(),
                                                        y,
                                                        y + e.abs(),
                                                        color.filled(),
                                                        6,
                                                    )
                                                }),
                                        )
                                        .map_err(|e| e.to_string())?;
                                }
                                chart.draw_series(
                                    pts.into_iter().map(|p| Circle::new(p, 3, color.filled())),
                                )
                            }
                        }
                        .map_err(|e| e.to_string())?;
                        let _ = anno;
                    }
                }};
            }
            match (self.log_x, self.log_y) {
                (false, false) => draw!(x0..x1, y0..y1),
                (true, false) => draw!(log_axis(x0, x1), y0..y1),
                (false, true) => draw!(x0..x1, log_axis(y0, y1)),
                (true, true) => draw!(log_axis(x0, x1), log_axis(y0, y1)),
            }
            self.draw_legend(&legend).map_err(|e| e.to_string())?;
            root.present().map_err(|e| e.to_string())?;
        }
        Ok(buf)
    }

    /// The legend in its own column right of the plot: a sample of each series' line, dashes or
    /// marker, and its name wrapped to the column.
    fn draw_legend<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, plotters::coord::Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        let font = ("sans-serif", 15).into_font().color(&BLACK);
        let mut y = 48;
        for (k, s) in self.series.iter().enumerate() {
            if s.name.is_empty() {
                continue; // an unnamed series (e.g. the line joining named markers) has no entry
            }
            let c = colour(s.colour.unwrap_or(k));
            let mid = y + 7;
            match s.style {
                Style::Line => area.draw(&PathElement::new(
                    vec![(8, mid), (34, mid)],
                    c.stroke_width(2),
                ))?,
                Style::Dashed | Style::Dotted => {
                    let (on, step) = if s.style == Style::Dashed {
                        (8, 12)
                    } else {
                        (2, 5)
                    };
                    for x in (8..34).step_by(step) {
                        area.draw(&PathElement::new(
                            vec![(x, mid), ((x + on).min(34), mid)],
                            c.stroke_width(2),
                        ))?;
                    }
                }
                Style::Points => area.draw(&Circle::new((21, mid), 4, c.filled()))?,
            }
            for line in wrap(&s.name, 30) {
                area.draw(&Text::new(line, (42, y), font.clone()))?;
                y += 17;
            }
            y += 6;
        }
        Ok(())
    }
}

/// Width of the legend column, in pixels.
const LEGEND_WIDTH: u32 = 260;

/// Several charts side by side in one SVG, `cols` per row, each as [`Figure::save_svg`] draws
/// it (nested `<svg>` elements), scaled down to at most 1470 px wide. Written atomically.
pub fn save_panels_svg(figs: &[Figure], cols: usize, path: &Path) -> Result<PathBuf, OutputError> {
    let cols = cols.clamp(1, figs.len().max(1));
    let rows = figs.len().div_ceil(cols).max(1);
    let (w, h) = ((720 + LEGEND_WIDTH) as usize, 480usize);
    let (tw, th) = (w * cols, h * rows);
    let shown = tw.min(1470);
    let mut out = format!(
        "<svg width=\"{shown}\" height=\"{}\" viewBox=\"0 0 {tw} {th}\" xmlns=\"http://www.w3.org/2000/svg\">\n",
        th * shown / tw
    );
    for (k, f) in figs.iter().enumerate() {
        let svg = f.to_svg().map_err(|msg| OutputError::Encode {
            path: path.to_path_buf(),
            msg,
        })?;
        let body = svg.trim_start_matches(|c| c != '<');
        let body = if body.starts_with("<?xml") {
            body.split_once("?>").map_or(body, |(_, b)| b.trim_start())
        } else {
            body
        };
        out.push_str(&format!(
            "<g transform=\"translate({},{})\">\n{body}\n</g>\n",
            (k % cols) * w,
            (k / cols) * h
        ));
    }
    out.push_str("</svg>\n");
    write_atomic(path, out.as_bytes())
}

/// The k-th colour of the Okabe–Ito palette (distinguishable with every common colour-vision
/// deficiency), cycling; yellow, hard to see on white, comes last.
fn colour(k: usize) -> RGBAColor {
    const OKABE_ITO: [(u8, u8, u8); 8] = [
        (0, 114, 178),
        (213, 94, 0),
        (0, 158, 115),
        (204, 121, 167),
        (230, 159, 0),
        (86, 180, 233),
        (0, 0, 0),
        (240, 228, 66),
    ];
    let (r, g, b) = OKABE_ITO[k % OKABE_ITO.len()];
    RGBColor(r, g, b).to_rgba()
}

/// Labels per axis that plotters' mesh asks for by default, and light lines per label (as set
/// by `max_light_lines` above).
const MESH_LABELS: usize = 11;
const MESH_LIGHT_PER_LABEL: usize = 4;

/// A log axis over [lo, hi]. Plotters places log ticks only from the first power of ten upward,
/// so a range holding fewer than two powers of ten (e.g. widths 256 and 512 padded to
/// 197…666) got no labelled tick at all, or only one; there the ticks are m×10ᵏ at a step in m
/// that gives at least three ([`narrow_log_ticks`]). Wider ranges keep plotters' own.
fn log_axis(lo: f64, hi: f64) -> WithKeyPoints<LogCoord<f64>> {
    let inner: LogCoord<f64> = (lo..hi).log_scale().into();
    let (bold, light) = match narrow_log_ticks(lo, hi) {
        Some(ticks) => (ticks, vec![]),
        None => (
            inner.key_points(BoldPoints(MESH_LABELS)),
            inner.key_points(LightPoints::new(
                MESH_LABELS,
                MESH_LABELS * MESH_LIGHT_PER_LABEL,
            )),
        ),
    };
    (lo..hi)
        .log_scale()
        .with_key_points(bold)
        .with_light_points(light)
}

/// The ticks of a log axis over [lo, hi] that holds fewer than two powers of ten: m×10ᵏ inside
/// it at the coarsest step in m (1, 0.5, 0.2, 0.1) that gives at least three; `None` for wider
/// axes.
fn narrow_log_ticks(lo: f64, hi: f64) -> Option<Vec<f64>> {
    if !(lo > 0.0 && hi > lo && hi.is_finite()) {
        return None;
    }
    let (k0, k1) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    let inside = |v: f64| v >= lo * (1.0 - 1e-12) && v <= hi * (1.0 + 1e-12);
    let powers = (k0..=k1).filter(|&k| inside(10f64.powi(k))).count();
    if powers >= 2 {
        return None;
    }
    let mut ticks = vec![];
    for per_unit in [1u32, 2, 5, 10] {
        // m = j / per_unit for j = per_unit … 10·per_unit − 1, i.e. 1 ≤ m < 10.
        ticks = (k0..=k1)
            .flat_map(|k| {
                (per_unit..10 * per_unit)
                    .map(move |j| f64::from(j) / f64::from(per_unit) * 10f64.powi(k))
            })
            .filter(|&v| inside(v))
            .collect();
        if ticks.len() >= 3 {
            break;
        }
    }
    Some(ticks)
}

/// A tick label: plain numbers on a linear axis; on a log axis 10ᵏ at powers of ten and m×10ᵏ
/// between them — with `sparse` (an axis spanning a decade or more) at m = 2 and 5 only, so that
/// a decade never crowds.
fn tick_label(v: f64, log: bool, sparse: bool) -> String {
    if !log || !(v > 0.0) || !v.is_finite() {
        return crate::output::fmt_num(v);
    }
    let k = v.log10().floor();
    let m = v / 10f64.powf(k);
    let (m, k) = if (m - 10.0).abs() < 1e-9 {
        (1.0, k + 1.0)
    } else {
        (m, k)
    };
    let sup: String = format!("{}", k as i64)
        .chars()
        .map(|c| match c {
            '-' => '⁻',
            d => ['⁰', '¹', '²', '³', '⁴', '⁵', '⁶', '⁷', '⁸', '⁹']
                [d.to_digit(10).unwrap_or(0) as usize],
        })
        .collect();
    if (m - 1.0).abs() < 1e-9 {
        format!("10{sup}")
    } else if !sparse || (m - 2.0).abs() < 1e-9 || (m - 5.0).abs() < 1e-9 {
        format!(
            "{}×10{sup}",
            crate::output::fmt_num((m * 100.0).round() / 100.0)
        )
    } else {
        String::new()
    }
}

/// `text` broken at spaces into lines of at most `width` characters (longer words stay whole).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![];
    let mut cur = String::new();
    for word in text.split_whitespace() {
        if !cur.is_empty() && cur.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(word);
    }
    if !cur.is_empty() {
        lines.push(cur);
    }
    lines
}

/// A heat map of z over a (possibly log-spaced) grid, with an optional diagonal marker (x = y).
#[derive(Debug, Clone)]
pub struct Heatmap {
    /// Title above the map.
    pub title: String,
    /// Label of the x axis.
    pub x_label: String,
    /// Label of the y axis.
    pub y_label: String,
    /// Grid points along x (columns).
    pub xs: Vec<f64>,
    /// Grid points along y (rows).
    pub ys: Vec<f64>,
    /// z[j][i] at (xs[i], ys[j]); shown as log10 when `log_z`.
    pub z: Vec<Vec<f64>>,
    /// Colour by log10 z.
    pub log_z: bool,
    /// Draw the diagonal x = y.
    pub diagonal: bool,
}

impl Heatmap {
    /// Render to an SVG file (atomically).
    pub fn save_svg(&self, path: &Path) -> Result<PathBuf, OutputError> {
        let svg = self.to_svg().map_err(|msg| OutputError::Encode {
            path: path.to_path_buf(),
            msg,
        })?;
        write_atomic(path, svg.as_bytes())
    }

    fn to_svg(&self) -> Result<String, String> {
        let mut buf = String::new();
        {
            let root = SVGBackend::with_string(&mut buf, (720, 560)).into_drawing_area();
            root.fill(&WHITE).map_err(|e| e.to_string())?;
            let tr = |v: f64| if self.log_z { v.log10() } else { v };
            let vals: Vec<f64> = self
                .z
                .iter()
                .flatten()
                .copied()
                .filter(|v| v.is_finite() && (!self.log_z || *v > 0.0))
                .map(tr)
                .collect();
            let (lo, hi) = vals
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                    (a.min(v), b.max(v))
                });
            let (nx, ny) = (self.xs.len() as i32, self.ys.len() as i32);
            let mut chart = ChartBuilder::on(&root)
                .caption(
                    format!(
                        "{} (colour: {}{} … {})",
                        self.title,
                        if self.log_z { "log10 " } else { "" },
                        crate::output::fmt_num(lo),
                        crate::output::fmt_num(hi)
                    ),
                    ("sans-serif", 16),
                )
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d((0..nx).into_segmented(), (0..ny).into_segmented())
                .map_err(|e| e.to_string())?;
            let (xs, ys) = (self.xs.clone(), self.ys.clone());
            let label = |vals: &[f64], v: &SegmentValue<i32>| match v {
                SegmentValue::CenterOf(i) => vals
                    .get(*i as usize)
                    .map_or(String::new(), |x| crate::output::fmt_num(*x)),
                _ => String::new(),
            };
            chart
                .configure_mesh()
                .disable_mesh()
                .x_desc(&self.x_label)
                .y_desc(&self.y_label)
                .x_labels(nx as usize)
                .y_labels(ny as usize)
                .x_label_formatter(&|v| label(&xs, v))
                .y_label_formatter(&|v| label(&ys, v))
                .draw()
                .map_err(|e| e.to_string())?;
            let cell = |i: i32, j: i32| {
                [
                    (SegmentValue::Exact(i), SegmentValue::Exact(j)),
                    (SegmentValue::Exact(i + 1), SegmentValue::Exact(j + 1)),
                ]
            };
            for (j, row) in self.z.iter().enumerate() {
                for (i, &v) in row.iter().enumerate() {
                    let t = if v.is_finite() && hi > lo {
                        ((tr(v) - lo) / (hi - lo)).clamp(0.0, 1.0)
                    } else {
                        f64::NAN
                    };
                    let color = if t.is_nan() {
                        RGBColor(200, 200, 200)
                    } else {
                        ViridisRGB::get_color(t)
                    };
                    chart
                        .draw_series(std::iter::once(Rectangle::new(
                            cell(i as i32, j as i32),
                            color.filled(),
                        )))
                        .map_err(|e| e.to_string())?;
                }
            }
            if self.diagonal {
                // Cells whose x and y values coincide (N = P) get a white outline.
                for (i, x) in self.xs.iter().enumerate() {
                    if let Some(j) = self.ys.iter().position(|y| (y / x - 1.0).abs() < 1e-9) {
                        chart
                            .draw_series(std::iter::once(Rectangle::new(
                                cell(i as i32, j as i32),
                                WHITE.stroke_width(3),
                            )))
                            .map_err(|e| e.to_string())?;
                    }
                }
            }
            root.present().map_err(|e| e.to_string())?;
        }
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_lines_points_and_error_bars() {
        let f = Figure::new("t", "x", "y")
            .with(Series::line(
                "theory",
                vec![(1.0, 1.0), (2.0, 4.0), (3.0, 9.0)],
            ))
            .with(Series::points(
                "mc",
                vec![(1.0, 1.1), (2.0, 3.9)],
                Some(vec![0.1, 0.2]),
            ));
        let svg = f.to_svg().unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("theory") && svg.contains("<circle"),
            "{}",
            &svg[..200.min(svg.len())]
        );
        let mut g = f.clone().log_log();
        g.series.push(Series::dashed("neg", vec![(1.0, -1.0)]));
        assert!(g.to_svg().unwrap().contains("polyline"));
    }

    #[test]
    fn narrow_log_axes_get_ticks_inside_them() {
        // Widths 256 and 512 padded by 1.3: no power of ten inside, plotters placed no tick.
        let t = narrow_log_ticks(256.0 / 1.3, 512.0 * 1.3).unwrap();
        assert_eq!(t, vec![200.0, 300.0, 400.0, 500.0, 600.0]);
        // One power of ten inside: the ticks below it are kept too.
        let t = narrow_log_ticks(2.0, 90.0).unwrap();
        assert_eq!(t.first(), Some(&2.0));
        assert!(t.contains(&10.0) && t.contains(&90.0) && t.len() == 17);
        // Fewer than three whole steps of m: halves (0.015, 0.02, 0.025, 0.03), then tenths.
        let t = narrow_log_ticks(0.0105, 0.03).unwrap();
        assert_eq!(t.len(), 4, "{t:?}");
        assert!((t[0] - 0.015).abs() < 1e-15 && (t[3] - 0.03).abs() < 1e-15);
        let t = narrow_log_ticks(1.05, 1.32).unwrap();
        assert_eq!(t.len(), 3, "{t:?}");
        assert!((t[0] - 1.1).abs() < 1e-12 && (t[2] - 1.3).abs() < 1e-12);
        // Two powers of ten or more: plotters' own ticks.
        assert!(narrow_log_ticks(5.0, 500.0).is_none());
        assert!(narrow_log_ticks(10.0, 100.0).is_none());
        // The drawn figure labels its narrow x axis.
        let svg = Figure::new("t", "width n", "y")
            .with(Series::points("mc", vec![(256.0, 1.0), (512.0, 2.0)], None))
            .log_log()
            .to_svg()
            .unwrap();
        for label in ["3×10²", "5×10²"] {
            assert!(svg.contains(label), "no tick {label} on the x axis");
        }
    }

    #[test]
    fn log_ticks_read_as_powers_of_ten_and_legends_wrap() {
        assert_eq!(tick_label(100.0, true, true), "10²");
        assert_eq!(tick_label(1e-3, true, true), "10⁻³");
        assert_eq!(tick_label(200.0, true, true), "2×10²");
        assert_eq!(
            tick_label(300.0, true, true),
            "",
            "wide axis: only 1, 2, 5 labelled"
        );
        assert_eq!(
            tick_label(300.0, true, false),
            "3×10²",
            "narrow axis: every tick"
        );
        assert_eq!(tick_label(0.02, true, true), "2×10⁻²");
        assert_eq!(tick_label(0.25, false, true), crate::output::fmt_num(0.25));
        assert_eq!(
            wrap("tanh networks n = 256, 100 GD steps", 12),
            vec!["tanh", "networks n =", "256, 100 GD", "steps"]
        );
        // The legend is drawn right of the plot area (x ≥ 720), not over the data.
        let svg = Figure::new("t", "x", "y")
            .with(Series::line("a legend entry", vec![(1.0, 1.0), (2.0, 2.0)]))
            .to_svg()
            .unwrap();
        let at = svg.find("a legend entry").expect("legend text");
        let tag = &svg[svg[..at].rfind("<text").unwrap()..at];
        let x: f64 = tag
            .split("x=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(x >= 720.0, "legend at x = {x}: {tag}");
    }
}
