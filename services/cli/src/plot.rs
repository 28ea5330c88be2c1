//! `churnguard report --plot FILE.svg`: the holdout check's two figures side by side, as
//! Fader, Hardie & Lee (2005) draw them: mean holdout purchases by calibration repeat
//! purchases, actual against predicted; and cumulative repeat purchases week by week,
//! actual against predicted, with the end of the calibration period marked.
//!
//! SVG only: plotters writes text as SVG `<text>` that the viewer sets in its own fonts.
//! A PNG would need plotters' `ttf` feature and the system's font files (font-kit),
//! which a fresh machine may lack.

use std::path::Path;

use churnguard_proto::scoring::v1 as pb;
use plotters::prelude::*;

use crate::error::CliError;

/// The image's size in pixels: two 640 × 480 figures.
pub const SIZE: (u32, u32) = (1280, 480);

const ACTUAL: RGBColor = RGBColor(31, 119, 180);
const PREDICTED: RGBColor = RGBColor(214, 39, 40);
const GREY: RGBColor = RGBColor(90, 90, 90);

/// Checks that `path` names an SVG file, the one format written.
pub fn check_path(path: &Path) -> Result<(), CliError> {
    let svg = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("svg"));
    if svg {
        Ok(())
    } else {
        Err(CliError::Usage(format!(
            "--plot {}: only SVG is written (FILE.svg); PNG would need the system's fonts",
            path.display()
        )))
    }
}

/// Draws `holdout` into `path` (an SVG file, replaced if it exists).
pub fn write(holdout: &pb::CheckHoldoutResponse, path: &Path) -> Result<(), CliError> {
    check_path(path)?;
    let failed = |e: &dyn std::fmt::Display| CliError::Plot {
        path: path.to_owned(),
        message: e.to_string(),
    };
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| failed(&e))?;
    let (left, right) = root.split_horizontally(SIZE.0 / 2);
    by_calibration_purchases(&left, holdout).map_err(|e| failed(&e))?;
    weekly(&right, holdout).map_err(|e| failed(&e))?;
    root.present().map_err(|e| failed(&e))?;
    Ok(())
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;
type DrawResult = Result<(), DrawingAreaErrorKind<std::io::Error>>;

/// A little upward room above the largest value.
fn top(values: impl Iterator<Item = f64>) -> f64 {
    let max = values.fold(0.0f64, f64::max);
    if max > 0.0 { max * 1.1 } else { 1.0 }
}

/// Mean holdout purchases by calibration repeat purchases (the last row "7+").
fn by_calibration_purchases(area: &Area<'_>, h: &pb::CheckHoldoutResponse) -> DrawResult {
    let rows = &h.by_calibration_purchases;
    let last = rows.len().saturating_sub(1) as i32;
    let open = rows
        .iter()
        .find(|r| r.or_more)
        .map(|r| r.calibration_purchases);
    let y_top = top(rows.iter().flat_map(|r| [r.actual_mean, r.predicted_mean]));
    let mut chart = ChartBuilder::on(area)
        .caption(
            "Holdout purchases by calibration purchases",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d(0..last.max(1), 0.0..y_top)?;
    chart
        .configure_mesh()
        .x_labels(rows.len().max(2))
        .x_label_formatter(&|x| match open {
            Some(o) if *x as u32 == o => format!("{o}+"),
            _ => x.to_string(),
        })
        .x_desc("repeat purchases in the calibration period")
        .y_desc("mean purchases in the holdout period")
        .y_label_formatter(&|n| format!("{n:.1}"))
        .draw()?;
    for (name, colour, value) in [
        (
            "actual",
            ACTUAL,
            (|r: &pb::HoldoutRow| r.actual_mean) as fn(&pb::HoldoutRow) -> f64,
        ),
        ("predicted (BG/NBD)", PREDICTED, |r| r.predicted_mean),
    ] {
        chart
            .draw_series(
                LineSeries::new(
                    rows.iter()
                        .map(|r| (r.calibration_purchases as i32, value(r))),
                    colour.stroke_width(2),
                )
                .point_size(4),
            )?
            .label(name)
            .legend(legend_mark(colour));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE)
        .border_style(BLACK)
        .draw()
}

/// A series' mark in the legend: a short line in its colour.
fn legend_mark(colour: RGBColor) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
}

/// Cumulative repeat purchases by week, with the calibration's end marked.
fn weekly(area: &Area<'_>, h: &pb::CheckHoldoutResponse) -> DrawResult {
    let weeks = h.weekly.last().map_or(1, |w| w.week).max(1);
    let y_top = top(h.weekly.iter().flat_map(|w| [w.actual as f64, w.predicted]));
    let mut chart = ChartBuilder::on(area)
        .caption("Cumulative repeat purchases", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(65)
        .build_cartesian_2d(0.0..f64::from(weeks), 0.0..y_top)?;
    chart
        .configure_mesh()
        .x_desc("week")
        .y_desc("repeat purchases")
        .x_label_formatter(&|w| format!("{w:.0}"))
        .y_label_formatter(&|n| format!("{n:.0}"))
        .draw()?;
    let start = std::iter::once((0.0, 0.0, 0.0));
    let points: Vec<(f64, f64, f64)> = start
        .chain(
            h.weekly
                .iter()
                .map(|w| (f64::from(w.week), w.actual as f64, w.predicted)),
        )
        .collect();
    chart
        .draw_series(LineSeries::new(
            points.iter().map(|(w, a, _)| (*w, *a)),
            ACTUAL.stroke_width(2),
        ))?
        .label("actual")
        .legend(legend_mark(ACTUAL));
    chart
        .draw_series(LineSeries::new(
            points.iter().map(|(w, _, p)| (*w, *p)),
            PREDICTED.stroke_width(2),
        ))?
        .label("predicted (BG/NBD)")
        .legend(legend_mark(PREDICTED));
    let end = h.calibration_weeks;
    chart
        .draw_series(LineSeries::new(
            [(end, 0.0), (end, y_top)],
            GREY.stroke_width(2),
        ))?
        .label(format!("calibration ends ({})", h.calibration_end))
        .legend(legend_mark(GREY));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE)
        .border_style(BLACK)
        .draw()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_svg_is_written() {
        assert!(check_path(Path::new("a/b.svg")).is_ok());
        assert!(check_path(Path::new("B.SVG")).is_ok());
        for bad in ["b.png", "b", "b.svg.txt"] {
            assert!(check_path(Path::new(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_check_draws_as_an_svg_with_both_figures() {
        let h = pb::CheckHoldoutResponse {
            calibration_end: "1997-09-30".into(),
            calibration_weeks: 3.0,
            by_calibration_purchases: (0..8)
                .map(|x| pb::HoldoutRow {
                    calibration_purchases: x,
                    or_more: x == 7,
                    customers: 10,
                    actual_mean: f64::from(x) * 0.8,
                    predicted_mean: f64::from(x) * 0.75,
                })
                .collect(),
            weekly: (1..=6)
                .map(|w| pb::HoldoutWeek {
                    week: w,
                    actual: u64::from(w) * 10,
                    predicted: f64::from(w) * 9.5,
                })
                .collect(),
            ..Default::default()
        };
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("holdout.svg");
        write(&h, &path).expect("drawn");
        let svg = std::fs::read_to_string(&path).expect("read");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        for text in [
            "Holdout purchases by calibration purchases",
            "Cumulative repeat purchases",
            "7+",
            "predicted (BG/NBD)",
        ] {
            assert!(svg.contains(text), "{text}");
        }
    }
}
