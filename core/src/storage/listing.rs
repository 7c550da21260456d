//! What `kpod images` prints: one row per image name, like `podman images`.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::resolve::split_name;
use super::Store;
use crate::Result;

/// One row of `kpod images`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageRow {
    /// Repository, or `<none>`.
    pub repository: String,
    /// Tag, or `<none>`.
    pub tag: String,
    /// The first 12 hex digits of the image ID.
    pub id: String,
    /// The full image ID.
    pub full_id: String,
    /// Creation time as stored (RFC 3339), if any.
    pub created: Option<String>,
    /// Creation time in seconds since the epoch, if parseable.
    pub created_unix: Option<i64>,
    /// Size in bytes as podman counts it (layers plus big-data items).
    pub size: u64,
}

impl ImageRow {
    /// `CREATED` as podman shows it, e.g. `3 weeks ago`.
    pub fn created_human(&self, now_unix: i64) -> String {
        match self.created_unix {
            Some(t) => format!("{} ago", human_duration(now_unix.saturating_sub(t))),
            None => "<unknown>".into(),
        }
    }

    /// `SIZE` as podman shows it, e.g. `8.34 MB`.
    pub fn size_human(&self) -> String {
        human_size(self.size)
    }
}

/// The rows of `kpod images`, newest image first, one per name (an unnamed
/// image gives one `<none>` row).
pub fn image_rows(store: &Store) -> Result<Vec<ImageRow>> {
    let mut images = store.images()?;
    let mut sized = Vec::with_capacity(images.len());
    for img in images.drain(..) {
        let size = store.stored_image(&img).size()?;
        sized.push((img, size));
    }
    sized.sort_by_key(|(img, _)| std::cmp::Reverse(img.created.as_deref().and_then(parse_rfc3339)));
    let mut rows = Vec::new();
    for (img, size) in sized {
        let created_unix = img.created.as_deref().and_then(parse_rfc3339);
        let row = |repository: String, tag: String| ImageRow {
            repository,
            tag,
            id: img.short_id().to_string(),
            full_id: img.id.clone(),
            created: img.created.clone(),
            created_unix,
            size,
        };
        let tagged: Vec<(String, String)> = img
            .names
            .iter()
            .map(|n| {
                let (repo, tag, _) = split_name(n);
                (repo, tag.unwrap_or_else(|| "<none>".into()))
            })
            .collect();
        if tagged.is_empty() {
            rows.push(row("<none>".into(), "<none>".into()));
        }
        for (repo, tag) in tagged {
            rows.push(row(repo, tag));
        }
    }
    Ok(rows)
}

/// The `kpod images` table: `REPOSITORY TAG IMAGE ID CREATED SIZE`, columns
/// padded as podman pads them.
pub fn images_table(rows: &[ImageRow]) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    images_table_at(rows, now)
}

fn images_table_at(rows: &[ImageRow], now: i64) -> String {
    let mut cells = vec![[
        "REPOSITORY".to_string(),
        "TAG".into(),
        "IMAGE ID".into(),
        "CREATED".into(),
        "SIZE".into(),
    ]];
    for r in rows {
        cells.push([
            r.repository.clone(),
            r.tag.clone(),
            r.id.clone(),
            r.created_human(now),
            r.size_human(),
        ]);
    }
    // podman prints through a tabwriter with minimum cell width 12 and padding 2.
    let mut widths = [0usize; 5];
    for c in &cells {
        for (w, s) in widths.iter_mut().zip(c.iter()) {
            *w = (*w).max(s.chars().count() + 2).max(12);
        }
    }
    let mut out = String::new();
    for c in &cells {
        let mut line = String::new();
        for (i, s) in c.iter().enumerate() {
            if i + 1 == c.len() {
                line.push_str(s);
            } else {
                line.push_str(&format!("{s:<w$}", w = widths[i]));
            }
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// `kpod images --format json`: an array shaped like `podman images --format
/// json` (`Id`, `Names`, `RepoTags`, `RepoDigests`, `Digest`, `Created`,
/// `CreatedAt`, `Size`).
pub fn images_json(store: &Store) -> Result<String> {
    let mut out = Vec::new();
    let mut images = store.images()?;
    images.sort_by_key(|img| std::cmp::Reverse(img.created.as_deref().and_then(parse_rfc3339)));
    for img in images {
        let size = store.stored_image(&img).size()?;
        let repo_tags: Vec<&String> = img.names.iter().filter(|n| !n.contains('@')).collect();
        let mut repo_digests: Vec<String> = Vec::new();
        if let Some(d) = &img.digest {
            for n in &img.names {
                let r = format!("{}@{d}", split_name(n).0);
                if !repo_digests.contains(&r) {
                    repo_digests.push(r);
                }
            }
        }
        out.push(serde_json::json!({
            "Id": img.id,
            "Names": img.names,
            "RepoTags": repo_tags,
            "RepoDigests": repo_digests,
            "Digest": img.digest,
            "Created": img.created.as_deref().and_then(parse_rfc3339),
            "CreatedAt": img.created,
            "Size": size,
        }));
    }
    Ok(serde_json::to_string_pretty(&out).unwrap_or_else(|_| "[]".into()))
}

/// Seconds since the epoch of an RFC 3339 time (`2017-06-01T00:00:00Z`,
/// fractions and numeric offsets allowed).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d, h, mi, se) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && (rest.starts_with('+') || rest.starts_with('-')) => {
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (rest.get(1..3)?.parse::<i64>().ok()? * 3600
                + rest.get(4..6)?.parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + se - offset)
}

/// A duration as podman (go-units `HumanDuration`) words it.
pub fn human_duration(seconds: i64) -> String {
    let s = seconds;
    if s < 1 {
        return "Less than a second".into();
    }
    if s == 1 {
        return "1 second".into();
    }
    if s < 60 {
        return format!("{s} seconds");
    }
    let minutes = s / 60;
    if minutes == 1 {
        return "About a minute".into();
    }
    if minutes < 60 {
        return format!("{minutes} minutes");
    }
    let hours = (s as f64 / 3600.0 + 0.5) as i64;
    if hours == 1 {
        "About an hour".into()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if hours < 24 * 7 * 2 {
        format!("{} days", hours / 24)
    } else if hours < 24 * 30 * 2 {
        format!("{} weeks", hours / 24 / 7)
    } else if hours < 24 * 365 * 2 {
        format!("{} months", hours / 24 / 30)
    } else {
        format!("{} years", s / 3600 / 24 / 365)
    }
}

/// A size as podman prints it: go-units `HumanSizeWithPrecision(size, 3)`
/// (decimal units, three significant digits) with a space before the unit.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1000.0 && unit + 1 < UNITS.len() {
        size /= 1000.0;
        unit += 1;
    }
    format!("{} {}", go_g3(size), UNITS[unit])
}

/// Go's `%.3g` for 0 <= v < 1000.
fn go_g3(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let exp = v.abs().log10().floor() as i32;
    let decimals = (2 - exp).max(0) as usize;
    let mut s = format!("{v:.decimals$}");
    // Rounding can reach 1000 (e.g. 999.7), which Go prints as 1e+03.
    if s.parse::<f64>().is_ok_and(|r| r >= 1000.0) {
        return "1e+03".into();
    }
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_podman() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(733), "733 B");
        assert_eq!(human_size(8_335_360), "8.34 MB");
        assert_eq!(human_size(1_000_000), "1 MB");
        assert_eq!(human_size(12_500), "12.5 kB");
        assert_eq!(human_size(5_580_000_000), "5.58 GB");
    }

    #[test]
    fn table_like_podman() {
        let row = ImageRow {
            repository: "localhost/tmp/st-exp/oci".into(),
            tag: "latest".into(),
            id: "eb0f30bcd3e8".into(),
            full_id: "eb0f30bcd3e8".into(),
            created: None,
            created_unix: Some(0),
            size: 8_335_360,
        };
        let now = 9 * 365 * 86_400 + 100;
        let table = images_table_at(&[row], now);
        // As printed by podman 4.3 for the same image.
        assert_eq!(
            table,
            "REPOSITORY                TAG         IMAGE ID      CREATED      SIZE\n\
             localhost/tmp/st-exp/oci  latest      eb0f30bcd3e8  9 years ago  8.34 MB\n"
        );
    }

    #[test]
    fn times() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2017-06-01T00:00:00Z"), Some(1_496_275_200));
        assert_eq!(
            parse_rfc3339("2026-11-27T19:48:50.997455181Z"),
            Some(1_795_808_930)
        );
        assert_eq!(
            parse_rfc3339("2017-06-01T02:00:00+02:00"),
            Some(1_496_275_200)
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(human_duration(3 * 86_400), "3 days");
        assert_eq!(human_duration(20 * 86_400), "2 weeks");
        assert_eq!(human_duration(9 * 365 * 86_400), "9 years");
    }
}
