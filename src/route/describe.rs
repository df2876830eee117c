//! The route table as text, for `jwtgate check` (DESIGN.md §2).

use super::table::{Route, RouteTable};

const HEADERS: [&str; 7] = ["#", "HOST", "METHODS", "PATH", "POLICY", "UPSTREAM", "EXTRAS"];

impl RouteTable {
    /// Renders the routes in config order as an aligned table: index, host, methods,
    /// path, policy (or handler), upstream and extras (`max_age`, `require`,
    /// `strip_prefix`). `*` means any host / any method; `-` means none.
    pub fn describe(&self) -> String {
        let rows: Vec<[String; 7]> = self.routes.iter().map(row).collect();
        let mut widths = HEADERS.map(str::len);
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        push_line(&mut out, &HEADERS.map(str::to_owned), &widths);
        for row in &rows {
            push_line(&mut out, row, &widths);
        }
        if rows.is_empty() {
            out.push_str("(no routes: every request is answered 404)\n");
        }
        out
    }
}

fn push_line(out: &mut String, cells: &[String; 7], widths: &[usize; 7]) {
    let mut line = String::new();
    for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
        if i > 0 {
            line.push_str("  ");
        }
        line.push_str(cell);
        line.extend(std::iter::repeat_n(' ', width.saturating_sub(cell.chars().count())));
    }
    out.push_str(line.trim_end());
    out.push('\n');
}

fn row(route: &Route) -> [String; 7] {
    let methods = match (route.effective_methods(), route.methods.is_some()) {
        (None, _) => "*".to_owned(),
        (Some(list), written) => {
            let joined = list.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(",");
            if written {
                joined
            } else {
                format!("{joined} (default)")
            }
        }
    };
    let policy = match route.handler {
        Some(handler) => format!("handler:{}", handler.as_str()),
        None => route.policy.as_str().to_owned(),
    };
    [
        route.index.to_string(),
        route.host.clone().unwrap_or_else(|| "*".to_owned()),
        methods,
        route.pattern.clone(),
        policy,
        route.upstream.clone().unwrap_or_else(|| "-".to_owned()),
        extras(route),
    ]
}

fn extras(route: &Route) -> String {
    let mut parts = Vec::new();
    if let Some(age) = route.max_age {
        parts.push(format!("max_age={}", humantime::format_duration(age)));
    }
    if !route.require.is_empty() {
        let pairs: Vec<String> = route.require.iter().map(|(k, v)| format!("{k}={v}")).collect();
        parts.push(format!("require={{{}}}", pairs.join(", ")));
    }
    if let Some(prefix) = &route.strip_prefix {
        parts.push(format!("strip_prefix={prefix}"));
    }
    parts.join(" ")
}
