//! Fault rules of the admin API: which requests a rule applies to and how
//! many uses it has left. Applying a rule to a request is the admin
//! module's middleware.

use serde::{Deserialize, Serialize};

/// One fault rule: for the next `count` requests matching `method` and the
/// `path` glob (`*` matches any run of characters, `/` included).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    #[serde(default)]
    pub method: Option<String>,
    pub path: String,
    #[serde(default)]
    pub status: Option<u16>,
    /// The error message of a `status` answer, instead of `Injected fault: <reason>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default)]
    pub retry_after: Option<u64>,
    #[serde(default)]
    pub delay_ms: Option<u64>,
    #[serde(default)]
    pub drop_connection: bool,
    #[serde(default = "one")]
    pub count: u64,
    #[serde(default)]
    pub after_action: bool,
}

fn one() -> u64 {
    1
}

impl FaultRule {
    pub fn matches(&self, method: &str, path: &str) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && glob_match(&self.path, path)
    }
}

/// `*` matches any run of characters (including `/`); everything else is
/// literal.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p = pattern.as_bytes();
    let t = text.as_bytes();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

/// Takes one use of the first rule matching the request, if any.
pub fn take_fault(faults: &mut Vec<FaultRule>, method: &str, path: &str) -> Option<FaultRule> {
    let idx = faults.iter().position(|f| f.matches(method, path))?;
    let rule = faults[idx].clone();
    faults[idx].count -= 1;
    if faults[idx].count == 0 {
        faults.remove(idx);
    }
    Some(rule)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn glob_star_spans_slashes() {
        assert!(glob_match(
            "/block-storage/*",
            "/block-storage/v2/t/volumes"
        ));
        assert!(glob_match(
            "*/action",
            "/block-storage/v2/t/volumes/x/action"
        ));
        assert!(glob_match("/image/v2/images", "/image/v2/images"));
        assert!(!glob_match("/image/v2/images", "/image/v2/images/x"));
        assert!(glob_match("/a*b*c", "/aXXbYYc"));
        assert!(!glob_match("/a*b*c", "/aXXbYY"));
    }

    #[test]
    fn a_rule_is_used_count_times() {
        let rule: FaultRule =
            serde_json::from_value(json!({"path": "/x*", "status": 503, "count": 2}))
                .expect("rule");
        let mut faults = vec![rule];
        assert!(take_fault(&mut faults, "GET", "/xa").is_some());
        assert!(take_fault(&mut faults, "POST", "/xb").is_some());
        assert!(take_fault(&mut faults, "GET", "/xc").is_none());
    }
}
