//! Final answers of math solutions: extraction (`\boxed{}`, "the answer is", `####`, the last
//! number), normalisation (LaTeX wrappers, units, thousands separators) and equivalence
//! (numbers, fractions, `\frac`, `\sqrt`, π, percentages and simple expressions are
//! evaluated with evalexpr; anything else is compared as normalised text).

use evalexpr::{
    ContextWithMutableFunctions, ContextWithMutableVariables, DefaultNumericTypes, HashMapContext,
};

type Value = evalexpr::Value<DefaultNumericTypes>;

/// Whether the final answer in `response` equals `answer`: what a math reward checks.
pub fn verify(response: &str, answer: &str) -> bool {
    extract_answer(response).is_some_and(|found| equivalent(&found, answer))
}

/// The final answer in a solution, if one can be found.
pub fn extract_answer(text: &str) -> Option<String> {
    if let Some(boxed) = last_boxed(text) {
        return Some(boxed);
    }
    let lower = text.to_lowercase();
    for marker in ["the answer is", "answer:", "####"] {
        if let Some(pos) = lower.rfind(marker) {
            let rest = text[pos + marker.len()..]
                .trim()
                .trim_start_matches(':')
                .trim();
            let line = rest
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .trim_end_matches('.')
                .trim();
            if !line.is_empty() {
                return Some(line.to_owned());
            }
        }
    }
    whole_expression(text)
        .or_else(|| last_equation(text))
        .or_else(|| last_number(text))
        .or_else(|| short_answer(text))
}

/// The whole text, when it is one short line that evaluates as a number or an expression
/// (`1.5 \times 10^{3}`, `\frac{3}{4}`) or is written as an interval, a tuple, a set or a list
/// of numbers (`[-8, 9)`, `\{1, 2\}`, `3, 5, 7`): nothing else in it can be the answer.
fn whole_expression(text: &str) -> Option<String> {
    let t = text.trim().trim_end_matches('.').trim();
    if t.contains('\n') || t.contains('=') || t.len() > 40 {
        return None;
    }
    let n = normalize(t);
    (numeric_value(&n).is_some() || list_items(&n).is_some()).then(|| t.to_owned())
}

/// A reply that is one short word (`\text{Yes}`, `Tuesday`) is its own answer; a phrase
/// ("no answer") is not an answer.
fn short_answer(text: &str) -> Option<String> {
    let t = text.trim().trim_end_matches('.').trim();
    (!t.is_empty() && !t.contains(char::is_whitespace) && t.chars().count() <= 40)
        .then(|| t.to_owned())
}

/// The items of an interval, tuple, set or bare list of numbers, with its brackets: `[-8,9)`
/// is (`[`, [-8, 9], `)`); `\{1,2\}` and `1,2` have no order (brackets `{` and ` `).
fn list_items(normalized: &str) -> Option<(char, Vec<String>, char)> {
    let (open, body, close) = if let Some(b) = normalized
        .strip_prefix("\\{")
        .and_then(|b| b.strip_suffix("\\}"))
    {
        ('{', b, '}')
    } else {
        let first = normalized.chars().next()?;
        let last = normalized.chars().last()?;
        if "([".contains(first) && ")]".contains(last) && normalized.len() >= 2 {
            (first, &normalized[1..normalized.len() - 1], last)
        } else {
            (' ', normalized, ' ')
        }
    };
    let items: Vec<String> = body.split(',').map(|i| i.trim().to_owned()).collect();
    let numeric = items.iter().all(|i| {
        !i.is_empty() && (numeric_value(i).is_some() || i == "\\infty" || i == "-\\infty")
    });
    (items.len() >= 2 && numeric).then_some((open, items, close))
}

/// Whether two lists (see [`list_items`]) hold equal items: in order for intervals and
/// tuples, in any order for sets and bare lists; `None` when either is not a list.
fn lists_equal(p: &str, r: &str) -> Option<bool> {
    let (po, mut pi, pc) = list_items(p)?;
    let (ro, mut ri, rc) = list_items(r)?;
    if (po, pc) != (ro, rc) || pi.len() != ri.len() {
        return Some(false);
    }
    if po == '{' || po == ' ' {
        let key = |i: &String| numeric_value(i).unwrap_or(f64::INFINITY);
        pi.sort_by(|a, b| key(a).total_cmp(&key(b)));
        ri.sort_by(|a, b| key(a).total_cmp(&key(b)));
    }
    Some(pi.iter().zip(&ri).all(|(a, b)| a == b || equivalent(a, b)))
}

/// What follows the last `=` of the reply's final statement: its last line when that is an
/// equation, else its last line with a number; what follows must be short and hold a digit
/// or be one word. "x = \frac{3}{4}" is `\frac{3}{4}`, not its last number `4`; "so x =
/// \text{Yes}" is `\text{Yes}`.
fn last_equation(text: &str) -> Option<String> {
    let last = text.lines().rev().find(|l| !l.trim().is_empty())?;
    let line = if last.contains('=') {
        last
    } else {
        text.lines()
            .rev()
            .find(|l| l.chars().any(|c| c.is_ascii_digit()))?
    };
    let (_, rhs) = line.rsplit_once('=')?;
    let rhs = rhs
        .trim()
        .trim_end_matches(['.', '$'])
        .trim_start_matches('$')
        .trim();
    let answer_like = rhs.chars().any(|c| c.is_ascii_digit()) || !rhs.contains(char::is_whitespace);
    (!rhs.is_empty() && rhs.len() <= 40 && answer_like).then(|| rhs.to_owned())
}

/// The contents of the last `\boxed{...}` (or `\fbox{...}`), braces balanced.
fn last_boxed(text: &str) -> Option<String> {
    let start = text.rfind("\\boxed").or_else(|| text.rfind("\\fbox"))?;
    let open = start + text[start..].find('{')?;
    let mut depth = 0;
    for (i, c) in text[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(text[open + 1..open + i].trim().to_owned());
                }
            }
            _ => {}
        }
    }
    None
}

fn last_number(text: &str) -> Option<String> {
    let mut found = None;
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let negative = chars[i] == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit);
        if chars[i].is_ascii_digit() || negative {
            let start = i;
            i += 1;
            while i < chars.len()
                && (chars[i].is_ascii_digit()
                    || ((chars[i] == '.' || chars[i] == ',' || chars[i] == '/')
                        && chars.get(i + 1).is_some_and(char::is_ascii_digit)))
            {
                i += 1;
            }
            // An exponent (1e3, 2.5E-4) and a percent sign belong to the number.
            if let Some(end) = exponent_end(&chars, i) {
                i = end;
            }
            if chars.get(i) == Some(&'%') {
                i += 1;
            }
            found = Some(chars[start..i].iter().collect::<String>());
        } else {
            i += 1;
        }
    }
    found
}

/// Replaces `\cmd{a}{b}` by `template` with `{0}`, `{1}` filled (braces balanced).
fn replace_command(s: &str, cmd: &str, args: usize, template: &str) -> String {
    let mut out = s.to_owned();
    while let Some(pos) = out.find(cmd) {
        let mut cursor = pos + cmd.len();
        let mut values = Vec::new();
        for _ in 0..args {
            let rest = &out[cursor..];
            let skipped = rest.len() - rest.trim_start().len();
            cursor += skipped;
            let value = if out[cursor..].starts_with('{') {
                let mut depth = 0;
                let mut end = None;
                for (i, c) in out[cursor..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = Some(cursor + i);
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                let Some(end) = end else { return out };
                let v = out[cursor + 1..end].to_owned();
                cursor = end + 1;
                v
            } else {
                // A single-character argument: \frac12, \sqrt2.
                let Some(c) = out[cursor..].chars().next() else {
                    return out;
                };
                cursor += c.len_utf8();
                c.to_string()
            };
            values.push(value);
        }
        let mut replacement = template.to_owned();
        for (i, v) in values.iter().enumerate() {
            replacement = replacement.replace(&format!("{{{i}}}"), v);
        }
        out = format!("{}{}{}", &out[..pos], replacement, &out[cursor..]);
    }
    out
}

/// Normalised text of an answer: LaTeX wrappers, `$`, spaces, units and trailing periods removed.
pub fn normalize(answer: &str) -> String {
    let mut s = answer.trim().trim_end_matches('.').to_owned();
    for cmd in [
        "\\boxed", "\\text", "\\textbf", "\\mathrm", "\\mathbf", "\\mbox",
    ] {
        s = replace_command(&s, cmd, 1, "{0}");
    }
    for (from, to) in [
        ("\\left", ""),
        ("\\right", ""),
        ("\\!", ""),
        ("\\,", ""),
        ("\\;", ""),
        ("\\ ", ""),
        ("\\$", ""),
        ("$", ""),
        ("^\\circ", ""),
        ("^{\\circ}", ""),
        ("°", ""),
        ("\\%", "%"),
        ("\\dfrac", "\\frac"),
        ("\\tfrac", "\\frac"),
        ("√", "\\sqrt"),
        ("\\cdot", "*"),
        ("\\times", "*"),
        ("×", "*"),
        ("\\div", "/"),
        ("−", "-"),
    ] {
        s = s.replace(from, to);
    }
    // "x = 5" → "5"
    if let Some((lhs, rhs)) = s.split_once('=')
        && lhs
            .trim()
            .chars()
            .all(|c| c.is_alphabetic() || c == ' ' || c == '_')
        && !rhs.trim().is_empty()
    {
        s = rhs.to_owned();
    }
    let mut s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    // "√16" has no braces: the radicand is the digits that follow.
    while let Some(pos) = s
        .find("\\sqrt")
        .filter(|&p| s[p + 5..].starts_with(|c: char| c.is_ascii_digit()))
    {
        let digits: String = s[pos + 5..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        s = format!(
            "{}\\sqrt{{{digits}}}{}",
            &s[..pos],
            &s[pos + 5 + digits.len()..]
        );
    }
    if let Some(rest) = s.strip_prefix('+') {
        s = rest.to_owned();
    }
    // Words ("Yes", "Red") compare without case; one-letter variables keep theirs.
    if s.len() > 1 && s.chars().all(char::is_alphabetic) {
        s = s.to_lowercase();
    }
    s = expand_exponents(&s);
    // Trailing units: "12cm", "5dollars", "3 apples" (letters after a number).
    let digits_end = s
        .rfind(|c: char| c.is_ascii_digit() || c == ')' || c == '}')
        .map_or(0, |i| i + 1);
    // One letter after a number is a variable (`4+9x`), not a unit.
    if digits_end > 0
        && s[digits_end..].chars().count() >= 2
        && s[digits_end..].chars().all(|c| c.is_alphabetic())
        && !s[..digits_end].contains('\\')
    {
        s.truncate(digits_end);
    }
    // Thousands separators: 1,234,567 (groups of three digits only).
    if s.contains(',')
        && s.split(',')
            .skip(1)
            .all(|g| g.len() == 3 && g.chars().all(|c| c.is_ascii_digit()))
        && s.split(',').next().is_some_and(|g| {
            !g.is_empty()
                && g.len() <= 3
                && g.trim_start_matches('-')
                    .chars()
                    .all(|c| c.is_ascii_digit())
        })
    {
        s = s.replace(',', "");
    }
    s
}

/// Scientific notation as a power of ten: `1e3` → `1*10^(3)`, `2.5E-4` → `2.5*10^(-4)`. Only
/// an `e` between a number and an exponent counts, so a variable `e` stays one.
fn expand_exponents(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len() + 8);
    let mut i = 0;
    while i < chars.len() {
        let after_number = i > 0 && chars[i - 1].is_ascii_digit();
        if let Some(end) = exponent_end(&chars, i).filter(|_| after_number) {
            out.push_str("*10^(");
            out.extend(chars[i + 1..end].iter().filter(|c| **c != '+'));
            out.push(')');
            i = end;
            continue;
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// Where the exponent starting at `chars[i]` ends, when an `e`/`E`, an optional sign and
/// digits start there and no letter follows them (`e3`, `E-4`; not the `e` of `2e` or `3ex`).
fn exponent_end(chars: &[char], i: usize) -> Option<usize> {
    if !matches!(chars.get(i), Some('e' | 'E')) {
        return None;
    }
    let digits_from = i + 1 + usize::from(matches!(chars.get(i + 1), Some('+' | '-')));
    let end = (digits_from..chars.len())
        .find(|&j| !chars[j].is_ascii_digit())
        .unwrap_or(chars.len());
    (end > digits_from && !chars.get(end).is_some_and(|c| c.is_alphabetic())).then_some(end)
}

/// The value of a normalised answer, when it is a number or a simple expression.
pub fn numeric_value(normalized: &str) -> Option<f64> {
    value_at(normalized, 0.0)
}

/// Letter runs allowed in an expression: functions, constants, one-letter variables.
fn letters_ok(expr: &str) -> bool {
    expr.split(|c: char| !c.is_ascii_alphabetic())
        .filter(|w| !w.is_empty())
        .all(|w| w == "sqrt" || w == "pi" || w.len() == 1)
}

/// One-letter variables of a normalised answer, sorted.
fn variables(normalized: &str) -> Vec<String> {
    let mut v: Vec<String> = normalized
        .replace("\\sqrt", "")
        .replace("\\frac", "")
        .replace("\\pi", "")
        .split(|c: char| !c.is_ascii_alphabetic())
        .filter(|w| w.len() == 1)
        .map(String::from)
        .collect();
    v.sort();
    v.dedup();
    v
}

/// The value of a normalised answer with its variables (if any) set to `point`, `point` +
/// 0.37, ... in alphabetical order.
fn value_at(normalized: &str, point: f64) -> Option<f64> {
    let (body, percent) = match normalized.strip_suffix('%') {
        Some(b) => (b, true),
        None => (normalized, false),
    };
    let mut expr = replace_command(body, "\\frac", 2, "(({0})/({1}))");
    expr = replace_command(&expr, "\\sqrt", 1, "sqrt({0})");
    expr = expr
        .replace("\\pi", "pi")
        .replace('{', "(")
        .replace('}', ")");
    // A chain like 2^3^2 is read differently by different people: no value.
    if expr.matches('^').count() > 1 && !expr.contains('(') {
        return None;
    }
    // Implicit products: 3sqrt(3), 2pi, 2(x+1), (1+x)(1-x).
    let mut implicit = String::with_capacity(expr.len() + 4);
    let mut prev: Option<char> = None;
    for c in expr.chars() {
        let product_follows = c.is_alphabetic() || c == '(';
        if product_follows && prev.is_some_and(|p| p.is_ascii_digit() || p == ')') {
            implicit.push('*');
        }
        implicit.push(c);
        prev = Some(c);
    }
    let expr = implicit;
    if expr.contains('\\') || expr.is_empty() || !letters_ok(&expr) {
        return None;
    }
    // evalexpr divides integers as integers: make every literal a float.
    let floated = float_literals(&expr);
    let mut ctx: HashMapContext<DefaultNumericTypes> = HashMapContext::new();
    for (i, var) in variables(normalized).iter().enumerate() {
        ctx.set_value(var.clone(), Value::Float(point + 0.37 * i as f64))
            .ok()?;
    }
    ctx.set_value("pi".into(), Value::Float(std::f64::consts::PI))
        .ok()?;
    ctx.set_function(
        "sqrt".into(),
        evalexpr::Function::new(|v: &Value| Ok(Value::Float(v.as_number()?.sqrt()))),
    )
    .ok()?;
    let value = evalexpr::eval_number_with_context(&floated, &ctx).ok()?;
    let value = if percent { value / 100.0 } else { value };
    value.is_finite().then_some(value)
}

fn float_literals(expr: &str) -> String {
    let mut out = String::with_capacity(expr.len() + 8);
    let mut number = String::new();
    let flush = |number: &mut String, out: &mut String| {
        if !number.is_empty() {
            out.push_str(number);
            if !number.contains('.') {
                out.push_str(".0");
            }
            number.clear();
        }
    };
    for c in expr.chars() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
        } else {
            flush(&mut number, &mut out);
            out.push(c);
        }
    }
    flush(&mut number, &mut out);
    out
}

/// Digits after the decimal point when `s` is a plain number literal (`-12.50` → 2, `7` → 0).
fn decimals(s: &str) -> Option<usize> {
    let body = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let plain = (!int.is_empty() || !frac.is_empty())
        && int.chars().all(|c| c.is_ascii_digit())
        && frac.chars().all(|c| c.is_ascii_digit());
    plain.then_some(frac.len())
}

/// Whether a predicted answer equals the reference answer.
pub fn equivalent(predicted: &str, reference: &str) -> bool {
    let (p, r) = (normalize(predicted), normalize(reference));
    if p == r {
        return true;
    }
    if let Some(same) = lists_equal(&p, &r) {
        return same;
    }
    // Expressions in variables: equal at several points (polynomial identity testing).
    let vars = variables(&p);
    if !vars.is_empty() || !variables(&r).is_empty() {
        return vars == variables(&r)
            && [0.618_033_9, 1.324_718, -0.732_050_8].iter().all(|&x| {
                match (value_at(&p, x), value_at(&r, x)) {
                    (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * b.abs().max(1.0),
                    _ => false,
                }
            });
    }
    match (numeric_value(&p), numeric_value(&r)) {
        (Some(a), Some(b)) => {
            // Two plain numbers must be equal; a plain decimal with 6+ digits after the point
            // matches an exact value (fraction, root, π) rounded to the digits it shows.
            let tolerance = match (decimals(&p), decimals(&r)) {
                (Some(_), Some(_)) => 1e-12 * b.abs().max(1.0),
                (Some(d), None) | (None, Some(d)) if d >= 6 => {
                    0.5 * 10f64.powi(-(d as i32)) + 1e-12
                }
                _ => 1e-9 * b.abs().max(1.0),
            };
            if (a - b).abs() <= tolerance {
                return true;
            }
            // "50%" against "50": a percentage may be written either way.
            let (pp, rp) = (p.ends_with('%'), r.ends_with('%'));
            (pp != rp)
                && ((pp && (a * 100.0 - b).abs() <= 1e-6 * b.abs().max(1.0))
                    || (rp && (b * 100.0 - a).abs() <= 1e-6 * a.abs().max(1.0)))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extraction_finds_the_final_answer() {
        assert_eq!(
            extract_answer("so \\boxed{\\frac{1}{2}} is it").as_deref(),
            Some("\\frac{1}{2}")
        );
        assert_eq!(
            extract_answer("first \\boxed{3} then \\boxed{x^{2}}").as_deref(),
            Some("x^{2}")
        );
        assert_eq!(extract_answer("The answer is 42.").as_deref(), Some("42"));
        assert_eq!(
            extract_answer("work...\n#### 1,234").as_deref(),
            Some("1,234")
        );
        assert_eq!(
            extract_answer("we get 3 then -7.5 finally").as_deref(),
            Some("-7.5")
        );
        assert_eq!(extract_answer("no numbers"), None);
        assert_eq!(
            extract_answer("I am not sure.\nLet me think about it more."),
            None
        );
        // A one-word reply is its own answer.
        assert_eq!(
            extract_answer("\\text{Yes}").as_deref(),
            Some("\\text{Yes}")
        );
        // An equation's right side, not its last number; exponents and percent signs kept.
        assert_eq!(
            extract_answer("x = \\frac{3}{4}").as_deref(),
            Some("\\frac{3}{4}")
        );
        assert_eq!(extract_answer("about 1e3 grams").as_deref(), Some("1e3"));
        assert_eq!(extract_answer("50%").as_deref(), Some("50%"));
    }

    #[test]
    fn answers_as_models_write_them_verify() {
        assert!(verify("x = \\frac{3}{4}", "0.75"));
        assert!(verify("1e3", "1000"));
        assert!(verify("2.5E-4", "0.00025"));
        assert!(verify("1.5 \\times 10^{3}", "1500"));
        // A bare percentage and a stated one agree.
        assert_eq!(verify("50%", "0.5"), verify("The answer is 50%", "0.5"));
        assert!(verify("50%", "0.5"));
        // An exponent is a power of ten, not digits run together.
        assert!(!verify("1e3", "13"));
    }
}
