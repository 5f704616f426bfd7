//! Size recommendation: what a buyer said of themselves (身高170, 65kg, 130斤, 脚长25厘米, 平时穿39码)
//! against the ranges a size chart's rows state ("身高163–170厘米，体重55–65公斤", "脚长24.0–24.5厘米",
//! "平时穿38–39码"), so a buyer who gave their measurements gets a size, not the chart and a
//! request for what they just wrote. Pure.

use crate::catalog::SizeRow;

/// A measure a buyer gives and a chart row states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// Centimetres.
    Height,
    /// Kilograms.
    Weight,
    /// Centimetres.
    FootLength,
    /// The size the buyer usually wears (a shoe size).
    UsualSize,
}

/// The measures a question states, each with its value in the measure's unit.
pub fn measurements(normalized: &str) -> Vec<(Measure, f32)> {
    let text = compact(normalized);
    let mut found = Vec::new();
    if let Some(cm) = number_after(&text, &["身高", "高"])
        .or_else(|| number_before(&text, &["cm", "厘米", "公分"]).filter(|v| *v >= 120.0))
    {
        found.push((Measure::Height, if cm < 3.0 { cm * 100.0 } else { cm }));
    } else if let Some(metres) = metres_height(&text) {
        found.push((Measure::Height, metres));
    }
    if let Some(kg) = number_before(&text, &["kg", "公斤", "千克"]) {
        found.push((Measure::Weight, kg));
    } else if let Some(jin) = number_before(&text, &["斤"]) {
        found.push((Measure::Weight, jin / 2.0));
    } else if let Some(value) = number_after(&text, &["体重"]) {
        // A bare 体重130 is in 斤, the way Chinese buyers usually give it; 体重65 in kg.
        found.push((
            Measure::Weight,
            if value >= 90.0 { value / 2.0 } else { value },
        ));
    }
    if let Some(length) = number_after(&text, &["脚长"]) {
        found.push((
            Measure::FootLength,
            if length > 100.0 {
                length / 10.0
            } else {
                length
            },
        ));
    }
    if let Some(size) = number_after(&text, &["平时穿", "平常穿", "一般穿", "穿"])
        .filter(|s| (20.0..=50.0).contains(s))
        .or_else(|| number_before(&text, &["码"]).filter(|s| (20.0..=50.0).contains(s)))
    {
        found.push((Measure::UsualSize, size));
    }
    found
}

/// The row whose ranges hold the most of the buyer's measures (all of those the row states);
/// on a tie the larger size, as shops advise between two sizes. None when no row holds any.
pub fn recommend<'a>(chart: &'a [SizeRow], given: &[(Measure, f32)]) -> Option<&'a SizeRow> {
    let mut best: Option<(usize, &SizeRow)> = None;
    for row in chart {
        let ranges = ranges(&row.fits);
        let mut held = 0;
        let mut contradicted = false;
        for (measure, value) in given {
            if let Some((_, low, high)) = ranges.iter().find(|(m, _, _)| m == measure) {
                if (*low - 0.01..=*high + 0.01).contains(value) {
                    held += 1;
                } else {
                    contradicted = true;
                }
            }
        }
        if held == 0 || (contradicted && held < 2) {
            continue;
        }
        if best.is_none_or(|(n, _)| held >= n) {
            best = Some((held, row));
        }
    }
    best.map(|(_, row)| row)
}

/// The ranges a chart row states: (measure, low, high).
fn ranges(fits: &str) -> Vec<(Measure, f32, f32)> {
    let labels: [(&str, Measure); 6] = [
        ("身高", Measure::Height),
        ("体重", Measure::Weight),
        ("脚长", Measure::FootLength),
        ("平时穿", Measure::UsualSize),
        ("鞋码", Measure::UsualSize),
        ("适合鞋码", Measure::UsualSize),
    ];
    let mut found = Vec::new();
    for (label, measure) in labels {
        let Some(at) = fits.find(label) else {
            continue;
        };
        let rest = &fits[at + label.len()..];
        let (low, rest) = leading_number(rest);
        let Some(low) = low else { continue };
        let rest = rest.trim_start_matches(['–', '-', '~', '～', '至']);
        let (high, _) = leading_number(rest);
        if !found.iter().any(|(m, _, _)| *m == measure) {
            found.push((measure, low, high.unwrap_or(low)));
        }
    }
    found
}

/// The text without spaces, numbers kept apart: normalising turns "24.5厘米" into "24 5厘米"
/// (a single digit after a space is the decimal again), and "1米78 140斤" must stay two numbers.
fn compact(normalized: &str) -> String {
    let chars: Vec<char> = normalized.chars().collect();
    let mut out = String::with_capacity(normalized.len());
    for (i, &c) in chars.iter().enumerate() {
        if c != ' ' {
            out.push(c);
            continue;
        }
        let before = i
            .checked_sub(1)
            .and_then(|j| chars.get(j))
            .is_some_and(char::is_ascii_digit);
        let run = chars[i + 1..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if before && run == 1 {
            out.push('.');
        } else if before && run > 1 {
            out.push('|');
        }
    }
    out
}

/// The number right after one of `labels`.
fn number_after(text: &str, labels: &[&str]) -> Option<f32> {
    labels.iter().find_map(|label| {
        text.match_indices(label)
            .find_map(|(at, _)| leading_number(&text[at + label.len()..]).0)
    })
}

/// The number right before one of `units`.
fn number_before(text: &str, units: &[&str]) -> Option<f32> {
    units.iter().find_map(|unit| {
        text.match_indices(unit)
            .find_map(|(at, _)| trailing_number(&text[..at]))
    })
}

/// 1米7 / 1米75 → 170 / 175.
fn metres_height(text: &str) -> Option<f32> {
    let at = text.find("1米")?;
    let (rest, _) = leading_number(&text[at + "1米".len()..]);
    let rest = rest?;
    Some(if rest < 10.0 {
        100.0 + rest * 10.0
    } else {
        100.0 + rest
    })
}

fn leading_number(text: &str) -> (Option<f32>, &str) {
    let end = text
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_digit() || *c == '.'))
        .map_or(text.len(), |(i, _)| i);
    (text[..end].parse().ok(), &text[end..])
}

fn trailing_number(text: &str) -> Option<f32> {
    let start = text
        .char_indices()
        .rev()
        .take_while(|(_, c)| c.is_ascii_digit() || *c == '.')
        .last()
        .map(|(i, _)| i)?;
    text[start..].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(size: &str, fits: &str) -> SizeRow {
        SizeRow {
            size: size.into(),
            fits: fits.into(),
            fits_en: String::new(),
        }
    }

    fn hoodie() -> Vec<SizeRow> {
        vec![
            row("M", "身高163–170厘米，体重55–65公斤"),
            row("L", "身高170–176厘米，体重65–75公斤"),
            row("XL", "身高176–182厘米，体重75–85公斤"),
        ]
    }

    #[track_caller]
    fn check(chart: &[SizeRow], question: &str, expect: Option<&str>) {
        let given = measurements(question);
        assert_eq!(
            recommend(chart, &given).map(|r| r.size.as_str()),
            expect,
            "{question}: {given:?}"
        );
    }

    #[test]
    fn measurements_as_buyers_write_them() {
        assert_eq!(
            measurements("身高170体重65kg"),
            vec![(Measure::Height, 170.0), (Measure::Weight, 65.0)]
        );
        assert_eq!(
            measurements("1米78 140斤"),
            vec![(Measure::Height, 178.0), (Measure::Weight, 70.0)]
        );
        assert_eq!(
            measurements("脚长25厘米"),
            vec![(Measure::FootLength, 25.0)]
        );
        assert_eq!(measurements("平时穿39码"), vec![(Measure::UsualSize, 39.0)]);
        assert!(measurements("尺码怎么选").is_empty());
    }

    #[test]
    fn the_row_that_holds_the_buyers_measures_is_recommended() {
        check(&hoodie(), "身高172 体重70公斤穿什么码", Some("L"));
        check(&hoodie(), "我165 体重120斤", Some("M"));
        // Height says M, weight says L: both hold on the boundary row, the larger wins.
        check(&hoodie(), "身高170体重65kg", Some("L"));
        check(&hoodie(), "身高150", None);
        let shoes = vec![
            row("39", "脚长24.0–24.5厘米"),
            row("40", "脚长24.5–25.0厘米"),
            row("41", "脚长25.0–25.5厘米"),
        ];
        check(&shoes, "脚长25.3厘米穿多大", Some("41"));
        let slippers = vec![row("38-39", "平时穿38–39码，脚长23.5–24.5厘米")];
        check(&slippers, "平时穿39码", Some("38-39"));
    }
}
