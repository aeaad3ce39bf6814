//! Line charts as SVG and PNG (plotters), readable without zooming: large fonts, thick lines,
//! a legend. The PNG text uses Ubuntu Light from the `epaint_default_fonts` crate, so no
//! system font is needed.

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

/// One named line, optionally with a shaded interval around it.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend label.
    pub name: String,
    /// (x, y) points, drawn in this order.
    pub points: Vec<(f64, f64)>,
    /// (x, low, high) of an interval band (empty: no band).
    pub band: Vec<(f64, f64, f64)>,
    /// Palette index, so one row keeps its colour across charts (default: its position).
    pub color: Option<usize>,
    /// Points with an interval on both axes (a marker and two error bars each), for charts
    /// that place each row at one (x, y) such as pass@1 against pass@k.
    pub crosses: Vec<Cross>,
}

/// One point with an interval on each axis: (estimate, low, high) in x and in y.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cross {
    /// x estimate, low, high.
    pub x: (f64, f64, f64),
    /// y estimate, low, high.
    pub y: (f64, f64, f64),
}

impl Series {
    /// A line without a band.
    pub fn line(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self {
            name: name.into(),
            points,
            band: Vec::new(),
            color: None,
            crosses: Vec::new(),
        }
    }

    /// One row as a point with intervals on both axes, in palette colour `color`.
    pub fn cross(name: impl Into<String>, color: usize, cross: Cross) -> Self {
        Self {
            name: name.into(),
            points: Vec::new(),
            band: Vec::new(),
            color: Some(color),
            crosses: vec![cross],
        }
    }
}

/// A chart to draw.
#[derive(Debug, Clone)]
pub struct Chart {
    /// Title.
    pub title: String,
    /// x-axis label.
    pub x_label: String,
    /// y-axis label.
    pub y_label: String,
    /// Plot x on a log2 axis (test-time scaling curves).
    pub log2_x: bool,
    /// The lines.
    pub series: Vec<Series>,
}

const SIZE: (u32, u32) = (1000, 650);
const COLORS: [RGBColor; 12] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(0, 0, 0),
    RGBColor(255, 187, 120),
];

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are a valid TrueType font shipped by the crate; failure only loses PNG text.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            epaint_default_fonts::UBUNTU_LIGHT,
        );
    });
}

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, chart: &Chart) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    let tx = |x: f64| if chart.log2_x { x.max(1e-9).log2() } else { x };
    let pts: Vec<(f64, f64)> = chart
        .series
        .iter()
        .flat_map(|s| {
            let band = s
                .band
                .iter()
                .flat_map(|&(x, lo, hi)| [(tx(x), lo), (tx(x), hi)]);
            let crosses = s
                .crosses
                .iter()
                .flat_map(|c| [(tx(c.x.1), c.y.1), (tx(c.x.2), c.y.2)]);
            s.points
                .iter()
                .map(|&(x, y)| (tx(x), y))
                .chain(band)
                .chain(crosses)
        })
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    let (mut x0, mut x1) = pts
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (mut y0, mut y1) = pts
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    if pts.is_empty() {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if chart.series.iter().any(|s| !s.crosses.is_empty()) {
        // Room around the outermost markers, which would otherwise sit on the frame.
        let pad = (x1 - x0) * 0.06;
        (x0, x1) = (x0 - pad, x1 + pad);
    }
    let pad = ((y1 - y0) * 0.08).max(1e-3);
    (y0, y1) = (y0 - pad, y1 + pad);
    let mut ctx = ChartBuilder::on(&root)
        .caption(&chart.title, ("sans-serif", 30))
        .margin(20)
        .x_label_area_size(60)
        .y_label_area_size(80)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(err)?;
    let log2 = chart.log2_x;
    let narrow_x = x1 - x0 < 5.0;
    // On a log2 axis, one tick per power of two.
    let x_ticks = if log2 {
        (x1 - x0).round() as usize + 1
    } else {
        10
    };
    ctx.configure_mesh()
        .x_labels(x_ticks)
        .x_desc(&chart.x_label)
        .y_desc(&chart.y_label)
        .label_style(("sans-serif", 20))
        .axis_desc_style(("sans-serif", 22))
        .x_label_formatter(&|v| {
            if log2 {
                format!("{}", 2f64.powf(*v).round())
            } else if narrow_x {
                // A fraction axis (pass@1 on a trade-off chart) needs its decimals.
                format!("{v:.3}")
            } else {
                format!("{v:.0}")
            }
        })
        .y_label_formatter(&|v| format!("{v:.2}"))
        .draw()
        .map_err(err)?;
    for (i, s) in chart.series.iter().enumerate() {
        let color = COLORS[s.color.unwrap_or(i) % COLORS.len()];
        let band: Vec<(f64, f64, f64)> = s
            .band
            .iter()
            .filter(|b| b.1.is_finite() && b.2.is_finite())
            .map(|&(x, lo, hi)| (tx(x), lo, hi))
            .collect();
        if band.len() > 1 {
            let outline: Vec<(f64, f64)> = band
                .iter()
                .map(|&(x, _, hi)| (x, hi))
                .chain(band.iter().rev().map(|&(x, lo, _)| (x, lo)))
                .collect();
            ctx.draw_series(std::iter::once(Polygon::new(
                outline,
                color.mix(0.18).filled(),
            )))
            .map_err(err)?;
        }
        let line: Vec<(f64, f64)> = s.points.iter().map(|&(x, y)| (tx(x), y)).collect();
        ctx.draw_series(LineSeries::new(line.clone(), color.stroke_width(3)))
            .map_err(err)?
            .label(s.name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3))
            });
        if line.len() <= 16 {
            ctx.draw_series(line.iter().map(|&p| Circle::new(p, 5, color.filled())))
                .map_err(err)?;
        }
        for c in s
            .crosses
            .iter()
            .filter(|c| c.x.0.is_finite() && c.y.0.is_finite())
        {
            let at = (tx(c.x.0), c.y.0);
            let bars = [
                vec![(tx(c.x.1), c.y.0), (tx(c.x.2), c.y.0)],
                vec![(at.0, c.y.1), (at.0, c.y.2)],
            ];
            ctx.draw_series(
                bars.into_iter()
                    .map(|b| PathElement::new(b, color.stroke_width(2))),
            )
            .map_err(err)?;
            ctx.draw_series(std::iter::once(Circle::new(at, 7, color.filled())))
                .map_err(err)?;
        }
    }
    ctx.configure_series_labels()
        .label_font(("sans-serif", 20))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

/// Draws `chart` to `<stem>.svg` and `<stem>.png` (each written to a temp file and renamed).
pub fn save_chart(stem: &Path, chart: &Chart) -> Result<Vec<PathBuf>, String> {
    register_font();
    let with_ext = |ext: &str| stem.with_extension(ext);
    let temp = |ext: &str| {
        let name = stem
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        stem.with_file_name(format!(".{name}.tmp.{ext}"))
    };
    let (svg, png) = (temp("svg"), temp("png"));
    draw(SVGBackend::new(&svg, SIZE).into_drawing_area(), chart)?;
    draw(BitMapBackend::new(&png, SIZE).into_drawing_area(), chart)?;
    let mut out = Vec::new();
    for ext in ["svg", "png"] {
        std::fs::rename(temp(ext), with_ext(ext))
            .map_err(|e| format!("{}: {e}", with_ext(ext).display()))?;
        out.push(with_ext(ext));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_svg_and_png() {
        let dir = std::env::temp_dir().join(format!("polyepo-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let chart = Chart {
            title: "pass@k".into(),
            x_label: "k".into(),
            y_label: "pass@k".into(),
            log2_x: true,
            series: vec![
                Series {
                    name: "a".into(),
                    points: vec![(1.0, 0.2), (2.0, 0.4), (4.0, 0.6)],
                    band: vec![(1.0, 0.1, 0.3), (2.0, 0.3, 0.5), (4.0, 0.5, 0.7)],
                    color: Some(2),
                    crosses: Vec::new(),
                },
                Series::cross(
                    "b",
                    3,
                    Cross {
                        x: (3.0, 2.0, 4.5),
                        y: (0.5, 0.4, 0.9),
                    },
                ),
            ],
        };
        let files = save_chart(&dir.join("curve"), &chart).unwrap();
        let svg = std::fs::read_to_string(&files[0]).unwrap();
        assert!(svg.contains("<svg") && svg.contains("pass@k"));
        // The cross's legend entry and its marker in its colour (palette 3).
        assert!(
            svg.contains("\nb\n") && svg.contains("fill=\"#FF7F0E\""),
            "cross not drawn"
        );
        let png = std::fs::read(&files[1]).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        std::fs::remove_dir_all(&dir).ok();
    }
}
