//! The judge's built-in prompts (the paper's clustering instructions: macro and micro
//! strategy, degenerate rules), one per domain. `{problem}`, `{responses}`, `{n}` and
//! `{degenerate}` are filled in; users may supply their own file with the same placeholders.

/// Shared instructions: what a strategy is, what degenerate means, the reply format.
const RULES: &str = "Group the {n} responses below by the reasoning strategy they use.
Two responses share a cluster only if they use the same macro strategy (the overall framework
or approach) and the same micro strategy (the method used at the key intermediate steps).
Arithmetic slips, wording, formatting, order of steps and the final answer's correctness do
not split clusters. A response that is gibberish, off-topic, repeats itself, or games the
format instead of solving the problem is degenerate: give it cluster id {degenerate}.

Reply with JSON only, one entry per response, keys \"1\" to \"{n}\":
{\"1\": {\"chain_of_thought\": \"<why>\", \"cluster_id\": <integer>}, \"2\": {...}, ...}
Number clusters 0, 1, 2, ... in order of first appearance.";

/// The built-in prompt for `name` (`math`, `code` or `generic`).
pub fn builtin(name: &str) -> Option<String> {
    let domain = match name {
        "math" => {
            "You judge solutions to a math problem. Strategies differ by method: e.g. algebraic manipulation, substitution, casework, a geometric argument, working backwards, estimation and checking."
        }
        "code" => {
            "You judge solutions to a programming problem. Strategies differ by algorithm and data structure: e.g. brute force, two pointers, dynamic programming, recursion, sorting first, a hash map."
        }
        "generic" => {
            "You judge responses to a task. Strategies differ by the approach taken to solve it."
        }
        _ => return None,
    };
    Some(format!(
        "{domain}\n\n{RULES}\n\nProblem:\n{{problem}}\n\nResponses:\n{{responses}}"
    ))
}

/// Fills a prompt template.
pub fn render(template: &str, problem: &str, responses: &[String], degenerate_id: i64) -> String {
    let listed: Vec<String> = responses
        .iter()
        .enumerate()
        .map(|(i, r)| format!("[{}]\n{}\n", i + 1, r))
        .collect();
    template
        .replace("{n}", &responses.len().to_string())
        .replace("{degenerate}", &degenerate_id.to_string())
        .replace("{problem}", problem)
        .replace("{responses}", &listed.join("\n"))
}
