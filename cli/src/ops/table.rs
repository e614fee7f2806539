//! Plain text tables: columns padded to their widest cell, a header row, no borders.

/// Renders `rows` under `header`, each column as wide as its widest cell. A cell may carry
/// terminal colour codes; they take no width.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(visible_width(cell));
            }
        }
    }
    let line = |cells: Vec<String>| {
        let last = cells.len().saturating_sub(1);
        cells
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                if i == last {
                    cell.clone()
                } else {
                    format!("{cell}{}", " ".repeat(widths[i] - visible_width(cell)))
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        out.push('\n');
        out.push_str(&line(row.clone()));
    }
    out
}

fn visible_width(cell: &str) -> usize {
    let mut width = 0;
    let mut in_escape = false;
    for c in cell.chars() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, _) => width += 1,
        }
    }
    width
}

/// `text` in red (under 30 days) or yellow, when colour is on.
pub fn highlight(text: &str, colour: bool, red: bool) -> String {
    match (colour, red) {
        (false, _) => text.to_string(),
        (true, true) => format!("\x1b[31;1m{text}\x1b[0m"),
        (true, false) => format!("\x1b[33m{text}\x1b[0m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_and_colour_takes_no_width() {
        let rows = vec![
            vec![
                "i-1".to_string(),
                highlight("Failed", true, true),
                "x".into(),
            ],
            vec!["i-22222".to_string(), "Success".into(), "".into()],
        ];
        let table = render(&["INSTANCE", "STATUS", "OUTPUT"], &rows);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "INSTANCE  STATUS   OUTPUT");
        assert_eq!(lines[1], "i-1       \x1b[31;1mFailed\x1b[0m   x");
        assert_eq!(lines[2], "i-22222   Success");
    }
}
