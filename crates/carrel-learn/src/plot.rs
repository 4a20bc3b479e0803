//! Loss and ROC curves as standalone SVG documents.
//!
//! The output is a complete SVG 1.1 file with `xmlns` and `viewBox`, so it can be saved as
//! `.svg` or embedded in HTML as is. All text is XML-escaped. Points with a NaN or infinite
//! coordinate are left out, so every coordinate in the output is a finite number.

use std::fmt::Write;

/// Width of the drawing in SVG user units.
const WIDTH: f64 = 640.0;
/// Height of the drawing in SVG user units.
const HEIGHT: f64 = 440.0;
// Edges of the plot area in user units.
const PLOT_LEFT: f64 = 76.0;
const PLOT_TOP: f64 = 48.0;
const PLOT_RIGHT: f64 = WIDTH - 24.0;
const PLOT_BOTTOM: f64 = HEIGHT - 60.0;
/// Distance by which lines may pass the plot area, so a line along an edge (a perfect ROC
/// curve) is drawn at full width.
const CLIP_MARGIN: f64 = 2.0;

/// Line colours, taken in turn by the series; the list repeats after the last one.
const COLOURS: [&str; 8] = [
    "#1b6ca8", "#d1495b", "#2e8b57", "#e0a100", "#6a4c93", "#00798c", "#8c564b", "#4d4d4d",
];

/// A named line of `(x, y)` points.
pub type Series<'a> = (&'a str, &'a [(f64, f64)]);

/// A named ROC curve: its `(false positive rate, true positive rate)` points and its AUC.
pub type RocCurve<'a> = (&'a str, &'a [(f64, f64)], f64);

/// Renders one line per named series of `(x, y)` points, for example the training loss per
/// round and the validation loss, with both axes fitted to the data.
///
/// A series with a single finite point is drawn as a dot.
pub fn loss_curve_svg(title: &str, series: &[Series<'_>], x_label: &str, y_label: &str) -> String {
    let finite: Vec<Vec<(f64, f64)>> = series
        .iter()
        .map(|(_, points)| finite_points(points))
        .collect();
    let xs = finite.iter().flatten().map(|&(x, _)| x);
    let ys = finite.iter().flatten().map(|&(_, y)| y);
    let frame = Frame {
        x: Axis::covering(xs),
        y: Axis::covering(ys),
    };

    let mut svg = Svg::begin(title);
    svg.axes(&frame, x_label, y_label);
    for (i, points) in finite.iter().enumerate() {
        svg.line(&frame, points, COLOURS[i % COLOURS.len()], None);
    }
    let names: Vec<String> = series.iter().map(|(name, _)| (*name).to_owned()).collect();
    svg.legend(&names, Corner::emptier(&frame, &finite));
    svg.finish()
}

/// Renders ROC curves `(name, points, auc)` on the unit square, with the diagonal of a
/// random score and a legend giving each curve's AUC.
///
/// Points are `(false positive rate, true positive rate)` as
/// [`roc_curve`](crate::metrics::roc_curve) returns them, and parts outside the unit
/// square are cut off.
pub fn roc_svg(title: &str, curves: &[RocCurve<'_>]) -> String {
    let frame = Frame {
        x: Axis::unit(),
        y: Axis::unit(),
    };
    let mut svg = Svg::begin(title);
    svg.axes(&frame, "False positive rate", "True positive rate");
    svg.line(&frame, &[(0.0, 0.0), (1.0, 1.0)], "#999999", Some("6 4"));
    for (i, (_, points, _)) in curves.iter().enumerate() {
        svg.line(
            &frame,
            &finite_points(points),
            COLOURS[i % COLOURS.len()],
            None,
        );
    }
    let names: Vec<String> = curves
        .iter()
        .map(|(name, _, auc)| format!("{name} (AUC {})", format_auc(*auc)))
        .collect();
    // ROC curves run through the top left, so the bottom right is free for the legend.
    svg.legend(&names, Corner::BottomRight);
    svg.finish()
}

/// Returns `text` with `&`, `<`, `>`, `"` and `'` escaped, and with characters that XML 1.0
/// does not allow replaced by U+FFFD.
pub fn escape_xml(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            '\t' | '\n' | '\r' => escaped.push(c),
            c if c < ' ' || c == '\u{fffe}' || c == '\u{ffff}' => escaped.push('\u{fffd}'),
            c => escaped.push(c),
        }
    }
    escaped
}

fn finite_points(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    points
        .iter()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect()
}

fn format_auc(auc: f64) -> String {
    if auc.is_finite() {
        format!("{auc:.4}")
    } else {
        "undefined".to_owned()
    }
}

/// The data range of one axis and its tick values.
struct Axis {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
    step: f64,
}

impl Axis {
    /// Returns the axis from 0 to 1 with ticks every 0.2.
    fn unit() -> Self {
        Self {
            lo: 0.0,
            hi: 1.0,
            ticks: (0..=5).map(|i| f64::from(i) / 5.0).collect(),
            step: 0.2,
        }
    }

    /// Returns an axis that covers every value, widened to round tick values.
    fn covering(values: impl Iterator<Item = f64>) -> Self {
        let (mut lo, mut hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        if lo > hi {
            return Self::unit();
        }
        if lo == hi {
            let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
            lo -= pad;
            hi += pad;
        }

        // Halving before subtracting keeps the span finite for values near f64::MAX.
        let half_span = hi / 2.0 - lo / 2.0;
        let step = nice_step(half_span / 2.5);
        let first = (lo / step).floor();
        let last = (hi / step).ceil();
        let rounded_span_fits = (first * step).is_finite() && (last * step).is_finite();
        if !(rounded_span_fits && last - first <= 20.0) {
            return Self {
                lo,
                hi,
                ticks: vec![lo, hi],
                step: half_span,
            };
        }
        Self {
            lo: first * step,
            hi: last * step,
            ticks: (0..=(last - first) as u32)
                .map(|i| (first + f64::from(i)) * step)
                .collect(),
            step,
        }
    }

    /// Returns where `value` falls between the ends, 0 at `lo` and 1 at `hi`.
    fn fraction(&self, value: f64) -> f64 {
        (value / 2.0 - self.lo / 2.0) / (self.hi / 2.0 - self.lo / 2.0)
    }

    fn label(&self, value: f64) -> String {
        // Adding 0.0 turns -0.0 into 0.0, so no tick reads "-0".
        let value = value + 0.0;
        if self.step >= 1e6 || self.step < 1e-4 {
            return format!("{value:.2e}");
        }
        let decimals = (-self.step.log10().floor()).max(0.0) as usize;
        format!("{value:.decimals$}")
    }
}

/// Returns 1, 2 or 5 times a power of ten, the smallest such value of at least `raw`.
fn nice_step(raw: f64) -> f64 {
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|&step| step >= raw)
        .unwrap_or(10.0 * magnitude)
}

/// Legend position in the plot area.
enum Corner {
    TopRight,
    BottomRight,
}

impl Corner {
    /// Returns the right-hand corner with fewer points near it, the top one on a tie.
    fn emptier(frame: &Frame, series: &[Vec<(f64, f64)>]) -> Self {
        let mut top = 0;
        let mut bottom = 0;
        for &(x, y) in series.iter().flatten() {
            if frame.x.fraction(x) < 0.5 {
                continue;
            }
            let height = frame.y.fraction(y);
            top += usize::from(height > 0.6);
            bottom += usize::from(height < 0.4);
        }
        if top <= bottom {
            Self::TopRight
        } else {
            Self::BottomRight
        }
    }
}

/// The two axes of a plot and the map from data to SVG coordinates.
struct Frame {
    x: Axis,
    y: Axis,
}

impl Frame {
    fn to_svg(&self, (x, y): (f64, f64)) -> (f64, f64) {
        let sx = PLOT_LEFT + self.x.fraction(x) * (PLOT_RIGHT - PLOT_LEFT);
        let sy = PLOT_BOTTOM - self.y.fraction(y) * (PLOT_BOTTOM - PLOT_TOP);
        (sx, sy)
    }
}

/// An SVG document being written.
struct Svg {
    out: String,
}

impl Svg {
    fn begin(title: &str) -> Self {
        let title = escape_xml(title);
        let mut out = String::new();
        // Writing to a String cannot fail, so the results of `write!` are ignored here and
        // below.
        let _ = write!(
            out,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" \
             width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" \
             font-family=\"sans-serif\" font-size=\"12\">\n\
             <title>{title}</title>\n\
             <rect x=\"0\" y=\"0\" width=\"{WIDTH}\" height=\"{HEIGHT}\" fill=\"#ffffff\"/>\n\
             <clipPath id=\"plot-area\"><rect x=\"{}\" y=\"{}\" \
             width=\"{}\" height=\"{}\"/></clipPath>\n\
             <text x=\"{}\" y=\"28\" text-anchor=\"middle\" font-size=\"16\">{title}</text>\n",
            PLOT_LEFT - CLIP_MARGIN,
            PLOT_TOP - CLIP_MARGIN,
            PLOT_RIGHT - PLOT_LEFT + 2.0 * CLIP_MARGIN,
            PLOT_BOTTOM - PLOT_TOP + 2.0 * CLIP_MARGIN,
            WIDTH / 2.0,
        );
        Self { out }
    }

    /// Draws the grid, the axis lines, the tick labels and the axis titles.
    fn axes(&mut self, frame: &Frame, x_label: &str, y_label: &str) {
        let out = &mut self.out;
        out.push_str("<g stroke=\"#e3e3e3\" stroke-width=\"1\">\n");
        for &tick in &frame.x.ticks {
            let (x, _) = frame.to_svg((tick, frame.y.lo));
            let _ = writeln!(
                out,
                "<line x1=\"{x:.2}\" y1=\"{PLOT_TOP}\" x2=\"{x:.2}\" y2=\"{PLOT_BOTTOM}\"/>"
            );
        }
        for &tick in &frame.y.ticks {
            let (_, y) = frame.to_svg((frame.x.lo, tick));
            let _ = writeln!(
                out,
                "<line x1=\"{PLOT_LEFT}\" y1=\"{y:.2}\" x2=\"{PLOT_RIGHT}\" y2=\"{y:.2}\"/>"
            );
        }
        out.push_str("</g>\n");

        let _ = writeln!(
            out,
            "<path d=\"M {PLOT_LEFT} {PLOT_TOP} V {PLOT_BOTTOM} H {PLOT_RIGHT}\" \
             fill=\"none\" stroke=\"#333333\" stroke-width=\"1\"/>"
        );
        out.push_str("<g fill=\"#333333\">\n");
        for &tick in &frame.x.ticks {
            let (x, _) = frame.to_svg((tick, frame.y.lo));
            let _ = writeln!(
                out,
                "<text x=\"{x:.2}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                PLOT_BOTTOM + 18.0,
                escape_xml(&frame.x.label(tick))
            );
        }
        for &tick in &frame.y.ticks {
            let (_, y) = frame.to_svg((frame.x.lo, tick));
            let _ = writeln!(
                out,
                "<text x=\"{}\" y=\"{:.2}\" text-anchor=\"end\">{}</text>",
                PLOT_LEFT - 6.0,
                y + 4.0,
                escape_xml(&frame.y.label(tick))
            );
        }
        let middle_x = (PLOT_LEFT + PLOT_RIGHT) / 2.0;
        let middle_y = (PLOT_TOP + PLOT_BOTTOM) / 2.0;
        let _ = writeln!(
            out,
            "<text x=\"{middle_x}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            HEIGHT - 16.0,
            escape_xml(x_label)
        );
        let _ = writeln!(
            out,
            "<text x=\"18\" y=\"{middle_y}\" text-anchor=\"middle\" \
             transform=\"rotate(-90 18 {middle_y})\">{}</text>",
            escape_xml(y_label)
        );
        out.push_str("</g>\n");
    }

    /// Draws `points` as a polyline, or as a dot when there is one point.
    fn line(&mut self, frame: &Frame, points: &[(f64, f64)], colour: &str, dash: Option<&str>) {
        let coordinates: Vec<(f64, f64)> = points
            .iter()
            .map(|&point| frame.to_svg(point))
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect();
        match coordinates.as_slice() {
            [] => {}
            [(x, y)] => {
                let _ = writeln!(
                    self.out,
                    "<circle cx=\"{x:.2}\" cy=\"{y:.2}\" r=\"3\" fill=\"{colour}\" \
                     clip-path=\"url(#plot-area)\"/>"
                );
            }
            _ => {
                let mut list = String::new();
                for (x, y) in &coordinates {
                    let _ = write!(list, "{x:.2},{y:.2} ");
                }
                let dash = dash.map_or(String::new(), |d| format!(" stroke-dasharray=\"{d}\""));
                let _ = writeln!(
                    self.out,
                    "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" \
                     stroke-width=\"2\"{dash} clip-path=\"url(#plot-area)\"/>",
                    list.trim_end()
                );
            }
        }
    }

    /// Draws a legend box in a corner of the plot area.
    fn legend(&mut self, names: &[String], corner: Corner) {
        if names.is_empty() {
            return;
        }
        let longest = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
        // Text width is estimated at 7 units per character of the 12-unit font.
        let width = 40.0 + 7.0 * longest as f64;
        let height = 8.0 + 18.0 * names.len() as f64;
        let left = PLOT_RIGHT - width - 8.0;
        let top = match corner {
            Corner::TopRight => PLOT_TOP + 8.0,
            Corner::BottomRight => PLOT_BOTTOM - height - 8.0,
        };
        let _ = writeln!(
            self.out,
            "<g><rect x=\"{left:.2}\" y=\"{top:.2}\" width=\"{width:.2}\" \
             height=\"{height:.2}\" fill=\"#ffffff\" fill-opacity=\"0.9\" stroke=\"#cccccc\"/>"
        );
        for (i, name) in names.iter().enumerate() {
            let y = top + 16.0 + 18.0 * i as f64;
            let colour = COLOURS[i % COLOURS.len()];
            let _ = writeln!(
                self.out,
                "<line x1=\"{:.2}\" y1=\"{:.2}\" x2=\"{:.2}\" y2=\"{:.2}\" stroke=\"{colour}\" \
                 stroke-width=\"2\"/>\n<text x=\"{:.2}\" y=\"{:.2}\">{}</text>",
                left + 8.0,
                y - 4.0,
                left + 28.0,
                y - 4.0,
                left + 34.0,
                y,
                escape_xml(name)
            );
        }
        self.out.push_str("</g>\n");
    }

    fn finish(mut self) -> String {
        self.out.push_str("</svg>\n");
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks that `svg` is one well-formed element tree: every tag closed in order, quoted
    /// attributes, no raw `<` or `&` outside markup and entities.
    fn check_well_formed(svg: &str) -> Result<(), String> {
        let mut rest = svg
            .strip_prefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n")
            .ok_or("missing XML declaration")?;
        let mut open: Vec<String> = Vec::new();
        let mut roots = 0;
        while let Some(start) = rest.find(['<', '&']) {
            check_text(&rest[..start])?;
            rest = &rest[start..];
            if rest.starts_with('&') {
                let end = rest.find(';').ok_or("unterminated entity")?;
                let entity = &rest[..=end];
                if !["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"].contains(&entity) {
                    return Err(format!("unknown entity {entity}"));
                }
                rest = &rest[end + 1..];
                continue;
            }
            let end = tag_end(rest).ok_or("unterminated tag")?;
            let tag = &rest[1..end];
            rest = &rest[end + 1..];
            if let Some(name) = tag.strip_prefix('/') {
                let expected = open.pop().ok_or(format!("</{name}> closes nothing"))?;
                if name != expected {
                    return Err(format!("</{name}> closes <{expected}>"));
                }
                continue;
            }
            let name: String = tag
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            if name.is_empty() {
                return Err(format!("tag without a name: <{tag}>"));
            }
            check_attributes(tag[name.len()..].trim_end_matches('/'))?;
            if open.is_empty() {
                roots += 1;
            }
            if !tag.ends_with('/') {
                open.push(name);
            }
        }
        check_text(rest)?;
        if !open.is_empty() {
            return Err(format!("unclosed tags {open:?}"));
        }
        if roots != 1 {
            return Err(format!("{roots} root elements"));
        }
        Ok(())
    }

    /// Returns the position of the `>` that ends the tag at the start of `text`, skipping
    /// quoted attribute values.
    fn tag_end(text: &str) -> Option<usize> {
        let mut quoted = false;
        for (i, c) in text.char_indices() {
            match c {
                '"' => quoted = !quoted,
                '>' if !quoted => return Some(i),
                '<' if i > 0 && !quoted => return None,
                _ => {}
            }
        }
        None
    }

    fn check_attributes(mut attributes: &str) -> Result<(), String> {
        loop {
            attributes = attributes.trim_start();
            if attributes.is_empty() {
                return Ok(());
            }
            let equals = attributes
                .find('=')
                .ok_or(format!("attribute without value: {attributes}"))?;
            let name = &attributes[..equals];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(format!("bad attribute name {name:?}"));
            }
            let value = attributes[equals + 1..]
                .strip_prefix('"')
                .ok_or(format!("unquoted value of {name}"))?;
            let close = value
                .find('"')
                .ok_or(format!("unterminated value of {name}"))?;
            check_text(&value[..close])?;
            attributes = &value[close + 1..];
        }
    }

    fn check_text(text: &str) -> Result<(), String> {
        if text.contains('>') || text.contains('<') {
            return Err(format!("unescaped markup character in {text:?}"));
        }
        Ok(())
    }

    /// Returns every number in the attribute values that hold coordinates.
    fn coordinates(svg: &str) -> Vec<String> {
        let mut numbers = Vec::new();
        for attribute in [
            "x", "y", "x1", "y1", "x2", "y2", "cx", "cy", "width", "height", "points",
        ] {
            let marker = format!(" {attribute}=\"");
            for (start, _) in svg.match_indices(&marker) {
                let value = &svg[start + marker.len()..];
                let value = &value[..value.find('"').unwrap()];
                numbers.extend(value.split([',', ' ']).map(str::to_owned));
            }
        }
        numbers
    }

    fn assert_valid(svg: &str) {
        if let Err(problem) = check_well_formed(svg) {
            panic!("{problem}\n{svg}");
        }
        assert!(svg.contains("xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.contains("viewBox=\"0 0 640 440\""));
        for number in coordinates(svg) {
            let parsed: f64 = number
                .parse()
                .unwrap_or_else(|_| panic!("{number:?} in\n{svg}"));
            assert!(parsed.is_finite(), "{number}");
        }
        assert!(!svg.contains("NaN"));
        assert!(!svg.contains("inf"));
    }

    #[test]
    fn checker_rejects_broken_documents() {
        let prefix = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
        for broken in [
            "<svg><g></svg>",
            "<svg><g></g>",
            "<svg>a < b</svg>",
            "<svg>a & b</svg>",
            "<svg x=1/>",
            "<svg/><svg/>",
        ] {
            assert!(
                check_well_formed(&format!("{prefix}{broken}")).is_err(),
                "{broken}"
            );
        }
        assert!(check_well_formed(&format!("{prefix}<svg a=\"1\"><g/>x &amp; y</svg>")).is_ok());
    }

    #[test]
    fn loss_curve_is_valid_svg() {
        let training = [(1.0, 0.69), (2.0, 0.41), (3.0, 0.33), (4.0, 0.30)];
        let validation = [(1.0, 0.70), (2.0, 0.45), (3.0, 0.39), (4.0, 0.38)];
        let svg = loss_curve_svg(
            "Loss per round",
            &[("training", &training), ("validation", &validation)],
            "round",
            "log loss",
        );
        assert_valid(&svg);
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains(">training</text>"));
        assert!(svg.contains(">validation</text>"));
        assert!(svg.contains(">round</text>"));
        assert!(svg.contains(">log loss</text>"));
    }

    #[test]
    fn title_and_labels_escaped() {
        let title = "AUC <0.5> & \"x\" 'y'";
        let svg = loss_curve_svg(title, &[("a<b", &[(0.0, 1.0), (1.0, 2.0)])], "x & y", "<y>");
        assert_valid(&svg);
        let escaped = "AUC &lt;0.5&gt; &amp; &quot;x&quot; &apos;y&apos;";
        assert!(svg.contains(&format!("<title>{escaped}</title>")), "{svg}");
        assert!(svg.contains(">a&lt;b</text>"));
        assert!(svg.contains(">x &amp; y</text>"));
        assert!(svg.contains(">&lt;y&gt;</text>"));
    }

    #[test]
    fn control_characters_replaced() {
        assert_eq!(escape_xml("a\u{0}b\u{1b}c\td"), "a\u{fffd}b\u{fffd}c\td");
    }

    #[test]
    fn non_finite_points_left_out() {
        let points = [
            (0.0, 1.0),
            (1.0, f64::NAN),
            (f64::INFINITY, 0.5),
            (2.0, f64::NEG_INFINITY),
            (3.0, 0.25),
        ];
        let svg = loss_curve_svg("loss", &[("training", &points)], "round", "loss");
        assert_valid(&svg);
        let polyline = svg.lines().find(|l| l.starts_with("<polyline")).unwrap();
        let list = polyline
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert_eq!(list.split(' ').count(), 2, "{polyline}");
    }

    #[test]
    fn degenerate_series_still_valid() {
        let empty: &[(f64, f64)] = &[];
        let single = [(5.0, 0.3)];
        let flat = [(0.0, 0.0), (1.0, 0.0)];
        let huge = [(0.0, -f64::MAX), (1.0, f64::MAX)];
        let cases: [(&str, &[Series<'_>]); 5] = [
            ("none", &[]),
            ("empty", &[("empty", empty)]),
            ("single", &[("single", &single)]),
            ("flat", &[("flat", &flat)]),
            ("huge", &[("huge", &huge)]),
        ];
        for (name, series) in cases {
            let svg = loss_curve_svg(name, series, "x", "y");
            assert_valid(&svg);
        }
        let svg = loss_curve_svg("single", &[("single", &single)], "x", "y");
        assert!(svg.contains("<circle"));
    }

    #[test]
    fn legend_avoids_rising_curve() {
        let falling = [(0.0, 1.0), (1.0, 0.5), (2.0, 0.1)];
        let rising = [(0.0, 0.1), (1.0, 0.5), (2.0, 1.0)];
        let top = loss_curve_svg("falling", &[("loss", &falling)], "round", "loss");
        let bottom = loss_curve_svg("rising", &[("loss", &rising)], "round", "loss");
        let legend_y = |svg: &str| -> f64 {
            let rect = svg.split("<g><rect ").nth(1).unwrap();
            let y = rect
                .split("y=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            y.parse().unwrap()
        };
        assert!(legend_y(&top) < PLOT_TOP + 20.0);
        assert!(legend_y(&bottom) > (PLOT_TOP + PLOT_BOTTOM) / 2.0);
    }

    #[test]
    fn ticks_are_round_numbers() {
        let axis = Axis::covering([0.31, 0.74].into_iter());
        assert_eq!(axis.step, 0.1);
        assert_eq!(axis.label(axis.ticks[0]), "0.3");
        assert_eq!(axis.label(*axis.ticks.last().unwrap()), "0.8");
        let axis = Axis::covering([-3.0, 120.0].into_iter());
        assert_eq!(axis.step, 50.0);
        assert_eq!(axis.ticks.first(), Some(&-50.0));
        assert_eq!(axis.ticks.last(), Some(&150.0));
        assert_eq!(Axis::covering([-0.0, 1.0].into_iter()).label(-0.0), "0.0");
    }

    #[test]
    fn roc_has_diagonal_and_auc_legend() {
        let model = [(0.0, 0.0), (0.1, 0.6), (0.3, 0.9), (1.0, 1.0)];
        let other = [(0.0, 0.0), (0.5, 0.5), (1.0, 1.0)];
        let svg = roc_svg(
            "ROC <test> & more",
            &[
                ("pooled", &model, 0.871_234),
                ("federated", &other, 0.5),
                ("bad", &[], f64::NAN),
            ],
        );
        assert_valid(&svg);
        assert!(svg.contains("stroke-dasharray"), "diagonal missing");
        assert!(svg.contains(">pooled (AUC 0.8712)</text>"));
        assert!(svg.contains(">federated (AUC 0.5000)</text>"));
        assert!(svg.contains(">bad (AUC undefined)</text>"));
        assert!(svg.contains(">False positive rate</text>"));
        assert!(svg.contains(">True positive rate</text>"));
        assert!(svg.contains("<title>ROC &lt;test&gt; &amp; more</title>"));
        // Diagonal plus two curves.
        assert_eq!(svg.matches("<polyline").count(), 3);
        for tick in ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"] {
            assert!(svg.contains(&format!(">{tick}</text>")), "tick {tick}");
        }
    }
}
