//! How the admin CLI shows things: tables, errors, dates.

use super::*;

pub(super) fn api_error_message(status: StatusCode, message: Option<&str>) -> String {
    let text = match message.map(str::trim) {
        Some(message) if !message.is_empty() => message,
        _ => status.canonical_reason().unwrap_or("unexpected response"),
    };
    let mut out = format!("admin API: {} {text}", status.as_u16());
    if status == StatusCode::UNAUTHORIZED {
        out.push_str(" (check LLMGW_ADMIN_TOKEN / --admin-token)");
    } else if status == StatusCode::FORBIDDEN {
        out.push_str(" (the credential's role does not allow it: see `llmgw admins list`)");
    }
    out
}

pub(super) fn created_key(created: KeyWithSecret) -> String {
    format!(
        "{}\nSecret: {}\nStore this secret now: it will not be shown again.",
        key_table(std::slice::from_ref(&created.key)),
        created.secret
    )
}

pub(super) fn tenant_table(tenants: &[Tenant]) -> String {
    let rows = tenants.iter().map(|tenant| {
        vec![
            tenant.name.clone(),
            tenant.id.clone(),
            tenant.status.clone(),
            tenant
                .monthly_budget_usd
                .clone()
                .unwrap_or_else(|| "unlimited".into()),
            tenant.policy.clone().unwrap_or_else(|| "default".into()),
            format_ms(tenant.created_at),
        ]
    });
    render_table(
        &["NAME", "ID", "STATUS", "BUDGET USD", "POLICY", "CREATED"],
        rows,
    )
}

pub(super) fn key_table(keys: &[Key]) -> String {
    let or_never = |ms: Option<i64>| ms.map_or_else(|| "never".to_owned(), format_ms);
    let rows = keys.iter().map(|key| {
        let models = match key.allowed_models.as_deref() {
            None | Some([]) => "all".to_owned(),
            Some(models) => models.join(","),
        };
        vec![
            key.name.clone(),
            key.id.clone(),
            key.prefix.clone(),
            key.status.clone(),
            models,
            or_never(key.expires_at),
            or_never(key.last_used_at),
        ]
    });
    render_table(
        &[
            "NAME",
            "ID",
            "PREFIX",
            "STATUS",
            "MODELS",
            "EXPIRES",
            "LAST USED",
        ],
        rows,
    )
}

/// Left-aligned columns two spaces apart. Control characters in cells become
/// `?`: names come from the server and must not break the layout or drive the
/// terminal.
pub(super) fn render_table(header: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    let lines: Vec<Vec<String>> = std::iter::once(header.iter().map(|h| (*h).to_owned()).collect())
        .chain(rows)
        .map(|row| {
            row.iter()
                .map(|cell| {
                    cell.chars()
                        .map(|c| if c.is_control() { '?' } else { c })
                        .collect()
                })
                .collect()
        })
        .collect();
    let mut widths = vec![0; header.len()];
    for line in &lines {
        for (width, cell) in widths.iter_mut().zip(line) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for line in &lines {
        let mut text = String::new();
        for (cell, width) in line.iter().zip(&widths) {
            text.push_str(cell);
            text.extend(std::iter::repeat_n(' ', width - cell.chars().count() + 2));
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out
}

/// `YYYY-MM-DD HH:MM UTC`.
pub(super) fn format_ms(ms: i64) -> String {
    let (days, ms_of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (year, month, day) = llmgw_calendar::civil_from_days(days);
    let (hour, minute) = (ms_of_day / 3_600_000, ms_of_day / 60_000 % 60);
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02} UTC")
}

/// Unix milliseconds or `YYYY-MM-DD` (midnight UTC).
pub(super) fn parse_expires_at(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let bytes = text.as_bytes();
    if !bytes.is_empty() && bytes.iter().all(u8::is_ascii_digit) {
        let ms: i64 = text
            .parse()
            .map_err(|_| format!("{text} is out of range"))?;
        // 10^11 ms is 1973: anything smaller is almost surely unix seconds.
        if ms < 100_000_000_000 {
            return Err(format!("{text} looks like unix seconds; give milliseconds"));
        }
        return Ok(ms);
    }
    llmgw_calendar::Day::parse(text)
        .map(llmgw_calendar::Day::start_ms)
        .map_err(|message| format!("{message}, or unix milliseconds"))
}
