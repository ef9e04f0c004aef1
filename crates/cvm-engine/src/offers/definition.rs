//! A checked, compiled offer: the document plus its expressions compiled
//! once at load, its templates split into parts and its dates parsed.
//!
//! Nothing here is parsed per event. A document that fails any check is
//! rejected as a whole with one line per problem: `<field path>: <what is
//! wrong>; <what to do>`.

use cvm_expr::{compile_formula, compile_predicate, Env, ExprError, Formula, Predicate, Type};
use cvm_proto::v1::{Channel, Discount, RenderedContent};

use super::{
    campaign::parse_document,
    document::{ChannelName, OfferDocument, Status, Trigger},
};
use crate::{
    events::EventKind,
    features::{schema, Features},
    policy::ContactKey,
    profile::contact_hash,
    time::duration_problem,
};

/// A rejected offer document: every problem found, with its field path.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("offer {id:?} rejected:\n  {}", errors.join("\n  "))]
pub struct OfferError {
    /// The document's id (or its key, when the id is unreadable).
    pub id: String,
    /// One line per problem: `<path>: <problem>; <what to do>`.
    pub errors: Vec<String>,
}

/// Text with `{{variable}}` placeholders, split once at load.
#[derive(Debug, Clone, Default)]
struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone)]
enum Part {
    Text(String),
    /// A schema variable, resolved to its slot and type at load.
    Variable(u16, Type),
    Discount,
}

impl Template {
    fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| format!("`{{{{` at byte {start} is not closed; write `{{{{name}}}}`"))?;
            let name = after[..end].trim();
            parts.push(match name {
                "discount" => Part::Discount,
                _ => match schema().lookup(name) {
                    Some((slot, ty)) => Part::Variable(slot, ty),
                    None => {
                        return Err(format!(
                            "unknown variable `{{{{{name}}}}}`; use `{{{{discount}}}}` or a variable from the README, e.g. `{{{{favourite_category}}}}`"
                        ))
                    }
                },
            });
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Self { parts })
    }

    fn render(&self, features: &Features<'_>, discount: &str) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Discount => out.push_str(discount),
                Part::Variable(slot, ty) => out.push_str(&features.display_slot(*slot, *ty)),
            }
            if out.len() > MAX_RENDERED_BYTES {
                let mut end = MAX_RENDERED_BYTES;
                while !out.is_char_boundary(end) {
                    end -= 1;
                }
                out.truncate(end);
                break;
            }
        }
        out
    }
}

/// Compiled templates of a channel: title, body (push) or call to action (stories).
#[derive(Debug, Clone)]
struct ChannelTemplates {
    title: Template,
    text: Template,
}

/// A checked, compiled offer document.
#[derive(Debug, Clone)]
pub struct OfferDefinition {
    /// The document as published.
    pub doc: OfferDocument,
    filter: Option<Predicate>,
    cancel_filter: Option<Predicate>,
    eligibility: Option<Predicate>,
    margin_formula: Option<Formula>,
    push: Option<ChannelTemplates>,
    stories: Option<ChannelTemplates>,
    valid_from_ms: Option<i64>,
    valid_until_ms: Option<i64>,
    sweep_at_ms: Option<i64>,
    /// [`contact_hash`] of the id and of the campaign id, as stored on contacts.
    offer_hash: u64,
    campaign_hash: u64,
}

impl PartialEq for OfferDefinition {
    /// Two definitions are equal when their documents are: the rest is derived.
    fn eq(&self, other: &Self) -> bool {
        self.doc == other.doc
    }
}

fn rfc3339_ms(text: &str) -> Result<i64, String> {
    humantime::parse_rfc3339(text)
        .map(|t| t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64))
        .map_err(|e| format!("{text:?} is not an RFC 3339 UTC time ({e}); write e.g. \"2026-11-27T18:00:00Z\""))
}

/// The longest template accepted, in bytes.
pub const MAX_TEMPLATE_BYTES: usize = 1_024;
/// The longest text a rendered template may produce, in bytes: variables
/// (a favourite category, say) come from input and are cut here.
pub const MAX_RENDERED_BYTES: usize = 2_048;

/// Collects problems while a document is compiled.
struct Problems(Vec<String>);

impl Problems {
    fn add(&mut self, path: &str, message: impl std::fmt::Display) {
        self.0.push(format!("{path}: {message}"));
    }

    fn predicate(&mut self, path: &str, source: Option<&String>) -> Option<Predicate> {
        let source = source?;
        compile_predicate(source, schema()).map_err(|e| self.expression(path, &e)).ok()
    }

    fn expression(&mut self, path: &str, e: &ExprError) {
        for p in &e.problems {
            self.add(path, p);
        }
    }

    fn template(&mut self, path: &str, text: &str, required: bool) -> Template {
        if required && text.trim().is_empty() {
            self.add(path, "is empty; write the text the customer sees");
        }
        if text.len() > MAX_TEMPLATE_BYTES {
            self.add(path, format_args!("is {} bytes; at most {MAX_TEMPLATE_BYTES}", text.len()));
            return Template::default();
        }
        Template::parse(text).unwrap_or_else(|e| {
            self.add(path, e);
            Template::default()
        })
    }
}

impl OfferDefinition {
    /// Parses a document (JSON when it starts with `{`, else YAML), checks
    /// and compiles it. `key` names it in errors when the id is unreadable.
    pub fn parse(key: &str, bytes: &[u8]) -> Result<Self, OfferError> {
        Self::compile(parse_document(key, bytes)?)
    }

    /// Checks and compiles a document; returns every problem at once.
    pub fn compile(doc: OfferDocument) -> Result<Self, OfferError> {
        let mut p = Problems(Vec::new());
        let id_ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if doc.id.is_empty() || !doc.id.chars().all(id_ok) {
            p.add("id", "must be non-empty letters, digits, '-', '_' or '.'; it is the config-topic key");
        }
        if doc.campaign_id.trim().is_empty() {
            p.add("campaign_id", "is empty; name the campaign this offer belongs to");
        }
        if doc.version == 0 {
            p.add("version", "must be at least 1; raise it on every edit");
        }
        let mut date =
            |path: &str, v: &Option<String>| v.as_deref().and_then(|t| rfc3339_ms(t).map_err(|e| p.add(path, e)).ok());
        let valid_from_ms = date("valid_from", &doc.valid_from);
        let valid_until_ms = date("valid_until", &doc.valid_until);
        let sweep_at_ms = match &doc.trigger {
            Trigger::Sweep { at, .. } => date("trigger.at", at),
            _ => None,
        };
        if let (Some(from), Some(until)) = (valid_from_ms, valid_until_ms) {
            if until <= from {
                p.add("valid_until", "is not after valid_from; the offer would never be live");
            }
        }

        let (mut filter, mut cancel_filter) = (None, None);
        match &doc.trigger {
            Trigger::Event { filter: f, .. } => filter = p.predicate("trigger.filter", f.as_ref()),
            Trigger::Delayed { filter: f, after, cancel_filter: cf, .. } => {
                filter = p.predicate("trigger.filter", f.as_ref());
                cancel_filter = p.predicate("trigger.cancel_filter", cf.as_ref());
                if after.is_zero() {
                    p.add("trigger.after", "is zero; use kind: event for immediate offers");
                }
                p.0.extend(duration_problem("trigger.after", *after));
            }
            Trigger::Inactivity { days } => {
                if !(1..=3_650).contains(days) {
                    p.add("trigger.days", "must be between 1 and 3650");
                }
            }
            Trigger::Sweep { rate_per_second, .. } => {
                if *rate_per_second == 0 {
                    p.add("trigger.rate_per_second", "must be at least 1");
                }
            }
        }
        let eligibility = p.predicate("eligibility", doc.eligibility.as_ref());

        let push = doc.channels.push.as_ref().map(|c| ChannelTemplates {
            title: p.template("channels.push.title", &c.title, true),
            text: p.template("channels.push.body", &c.body, true),
        });
        let stories = doc.channels.stories.as_ref().map(|c| {
            if c.template.trim().is_empty() {
                p.add("channels.stories.template", "is empty; name the app's story template");
            }
            ChannelTemplates {
                title: p.template("channels.stories.title", &c.title, false),
                text: p.template("channels.stories.call_to_action", &c.call_to_action, true),
            }
        });
        if push.is_none() && stories.is_none() {
            p.add("channels", "has no channel; add `push` and/or `stories` content");
        }

        let r = &doc.reward;
        let kinds = usize::from(r.percent.is_some())
            + usize::from(!r.ladder_percent.is_empty())
            + usize::from(r.fixed_minor.is_some());
        if kinds > 1 {
            p.add("reward", "sets more than one of percent, ladder_percent, fixed_minor; keep one");
        }
        if r.percent.is_some_and(|x| !(1..=90).contains(&x)) {
            p.add("reward.percent", "must be 1-90; use fixed_minor for giveaways");
        }
        for (i, step) in r.ladder_percent.iter().enumerate() {
            if !(1..=90).contains(step) {
                p.add(&format!("reward.ladder_percent[{i}]"), "must be 1-90");
            }
            if i > 0 && *step <= r.ladder_percent[i - 1] {
                p.add(&format!("reward.ladder_percent[{i}]"), "is not above the previous step; list steps ascending");
            }
        }
        if r.fixed_minor.is_some_and(|x| x <= 0) {
            p.add("reward.fixed_minor", "must be positive (minor units)");
        }

        let e = &doc.economics;
        let margin_formula = match (&e.margin_per_redemption_minor, &e.margin_formula) {
            (Some(_), Some(_)) => {
                p.add("economics", "sets both margin_per_redemption_minor and margin_formula; keep one");
                None
            }
            (None, None) => {
                p.add("economics", "needs margin_per_redemption_minor or margin_formula; the score needs a margin");
                None
            }
            (Some(_), None) => None,
            (None, Some(src)) => {
                compile_formula(src, schema()).map_err(|err| p.expression("economics.margin_formula", &err)).ok()
            }
        };
        if e.contact_cost_minor < 0 {
            p.add("economics.contact_cost_minor", "is negative; a contact costs zero or more");
        }
        if !(doc.weight.is_finite() && doc.weight > 0.0) {
            p.add("weight", "must be a positive number (1 = neutral)");
        }
        for problem in doc.contact_policy.problems("contact_policy") {
            p.0.push(problem);
        }
        if doc.ttl.is_zero() {
            p.add("ttl", "is zero; offers need a validity, e.g. \"48h\"");
        }
        p.0.extend(duration_problem("ttl", doc.ttl));
        if let Some(c) = &doc.cascade {
            if doc.channels.push.is_none() {
                p.add("cascade", "follows up an unopened push, but the offer has no push content");
            }
            match c.to {
                ChannelName::Push => p.add("cascade.to", "must differ from push; use \"stories\""),
                ChannelName::Stories if doc.channels.stories.is_none() => {
                    p.add("cascade.to", "is stories, but channels.stories is missing; add its content")
                }
                ChannelName::Stories => {}
            }
            if c.after.is_zero() {
                p.add("cascade.after", "is zero; give the customer time to open the push, e.g. \"4h\"");
            }
            p.0.extend(duration_problem("cascade.after", c.after));
        }
        if !p.0.is_empty() {
            return Err(OfferError { id: doc.id, errors: p.0 });
        }
        let (offer_hash, campaign_hash) = (contact_hash(&doc.id), contact_hash(&doc.campaign_id));
        Ok(Self {
            doc,
            filter,
            cancel_filter,
            eligibility,
            margin_formula,
            push,
            stories,
            valid_from_ms,
            valid_until_ms,
            sweep_at_ms,
            offer_hash,
            campaign_hash,
        })
    }

    /// The offer's id.
    pub fn id(&self) -> &str {
        &self.doc.id
    }

    /// The document version.
    pub fn version(&self) -> u32 {
        self.doc.version
    }

    /// The offer as the contact policy sees it: ids and their contact hashes.
    pub fn subject(&self) -> ContactKey<'_> {
        ContactKey {
            offer_id: &self.doc.id,
            campaign_id: &self.doc.campaign_id,
            offer: self.offer_hash,
            campaign: self.campaign_hash,
        }
    }

    /// Whether the offer may be sent at `now_ms`: active and inside its validity.
    pub fn is_live(&self, now_ms: i64) -> bool {
        self.doc.status == Status::Active
            && self.valid_from_ms.is_none_or(|t| now_ms >= t)
            && self.valid_until_ms.is_none_or(|t| now_ms < t)
    }

    /// Whether a sweep offer should be running at `now_ms`: live, and its
    /// start time (if any) reached. Always false for other triggers.
    pub fn sweep_due(&self, now_ms: i64) -> bool {
        matches!(self.doc.trigger, Trigger::Sweep { .. })
            && self.is_live(now_ms)
            && self.sweep_at_ms.is_none_or(|at| now_ms >= at)
    }

    /// The trigger's compiled filter, if it has one.
    pub(crate) fn filter(&self) -> Option<&Predicate> {
        self.filter.as_ref()
    }

    /// Whether the trigger's filter accepts the event described by `features`.
    pub fn passes_filter(&self, features: &Features<'_>) -> bool {
        self.filter.as_ref().is_none_or(|f| f.eval(features))
    }

    /// Whether an event of `kind` with `features` cancels a pending delayed trigger.
    pub fn cancels(&self, kind: EventKind, features: &Features<'_>) -> bool {
        match &self.doc.trigger {
            Trigger::Delayed { cancel_on, .. } if *cancel_on == kind => {
                self.cancel_filter.as_ref().is_none_or(|f| f.eval(features))
            }
            _ => false,
        }
    }

    /// Whether the customer is eligible.
    #[inline]
    pub fn eligible(&self, features: &impl Env) -> bool {
        self.eligibility.as_ref().is_none_or(|e| e.eval(features))
    }

    /// The first eligibility clause that fails, as written.
    pub fn failing_clause(&self, features: &Features<'_>) -> Option<&str> {
        self.eligibility.as_ref().and_then(|e| e.failing_clause(features))
    }

    /// The channels the offer has content for, push first.
    pub fn channels(&self) -> impl Iterator<Item = Channel> + '_ {
        [(Channel::Push, self.push.is_some()), (Channel::Stories, self.stories.is_some())]
            .into_iter()
            .filter_map(|(c, has)| has.then_some(c))
    }

    /// Margin of one redemption before the reward, minor units.
    pub fn margin_minor(&self, features: &Features<'_>) -> f64 {
        match (&self.margin_formula, self.doc.economics.margin_per_redemption_minor) {
            (Some(f), _) => (f.eval(features) * 100.0).max(0.0),
            (None, Some(m)) => m as f64,
            (None, None) => 0.0,
        }
    }

    /// The reward of the `contacts_before`-th renewed contact (ladders go one
    /// step deeper per earlier contact of this offer, up to the last step).
    pub fn discount(&self, contacts_before: usize) -> Discount {
        let r = &self.doc.reward;
        let percent = match (r.percent, r.ladder_percent.as_slice()) {
            (Some(p), _) => p,
            (None, []) => 0,
            (None, steps) => steps[contacts_before.min(steps.len() - 1)],
        };
        Discount { percent, fixed_minor: r.fixed_minor.unwrap_or(0) }
    }

    /// The content for `channel`, rendered for the customer.
    pub fn render(&self, channel: Channel, features: &Features<'_>, discount: &Discount) -> RenderedContent {
        let discount_text = if discount.percent > 0 {
            format!("{}%", discount.percent)
        } else {
            format!("{:.2}", discount.fixed_minor as f64 / 100.0)
        };
        match channel {
            Channel::Push => {
                let (t, c) = (self.push.as_ref(), self.doc.channels.push.as_ref());
                let (Some(t), Some(c)) = (t, c) else { return RenderedContent::default() };
                RenderedContent {
                    title: t.title.render(features, &discount_text),
                    body: t.text.render(features, &discount_text),
                    deep_link: c.deep_link.clone(),
                    ..Default::default()
                }
            }
            Channel::Stories => {
                let (t, c) = (self.stories.as_ref(), self.doc.channels.stories.as_ref());
                let (Some(t), Some(c)) = (t, c) else { return RenderedContent::default() };
                RenderedContent {
                    title: t.title.render(features, &discount_text),
                    call_to_action: t.text.render(features, &discount_text),
                    deep_link: c.deep_link.clone(),
                    image_url: c.image_url.clone(),
                    story_template_id: c.template.clone(),
                    ..Default::default()
                }
            }
            Channel::Unspecified => RenderedContent::default(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{
        features::EventFacts,
        profile::{CategoryAffinity, Profile},
    };

    pub(crate) const SAMPLE_YAML: &str = r#"
id: sushi-comeback
version: 1
campaign_id: reactivation
trigger: { kind: event, event: app_open }
eligibility: days_since_last_purchase >= 21 && category_share("sushi") >= 0.2
channels:
  push: { title: "Missing {{favourite_category}}?", body: "{{discount}} off tonight", deep_link: "app://sushi" }
  stories: { template: comeback-v1, title: "Back for {{ favourite_category }}", call_to_action: "Get {{discount}} off" }
reward: { percent: 10 }
economics: { margin_per_redemption_minor: 600, contact_cost_minor: 1 }
category: sushi
ttl: 48h
"#;

    pub(crate) fn sample() -> OfferDefinition {
        OfferDefinition::parse("k", SAMPLE_YAML.as_bytes()).unwrap()
    }

    fn errors(doc: &str) -> String {
        OfferDefinition::parse("key-1", doc.as_bytes()).unwrap_err().errors.join("\n")
    }

    #[test]
    fn yaml_and_json_documents_compile_and_render() {
        let d = sample();
        let json = serde_json::to_string(&d.doc).unwrap();
        assert_eq!(OfferDefinition::parse("k", json.as_bytes()).unwrap(), d, "JSON round trip");
        let mut p = Profile::default();
        p.categories.push(CategoryAffinity { category: "sushi".into(), score: 1.0, as_of_day: 0 });
        let f = Features::compute(&p, EventFacts::default(), 0);
        let push = d.render(Channel::Push, &f, &d.discount(0));
        assert_eq!((push.title.as_str(), push.body.as_str()), ("Missing sushi?", "10% off tonight"));
        let story = d.render(Channel::Stories, &f, &d.discount(0));
        assert_eq!(story.title, "Back for sushi");
        assert_eq!(story.call_to_action, "Get 10% off");
        assert_eq!(story.story_template_id, "comeback-v1");
        assert_eq!(d.channels().collect::<Vec<_>>(), [Channel::Push, Channel::Stories]);
    }

    #[test]
    fn reports_every_problem_with_its_path() {
        let doc = SAMPLE_YAML
            .replace("version: 1", "version: 0")
            .replace("{ percent: 10 }", "{ percent: 95 }")
            .replace("category_share(\"sushi\") >= 0.2", "category_share(\"sushi\") >= \"high\"")
            .replace("{{favourite_category}}?", "{{favourite_categry}}?");
        let e = errors(&doc);
        for needle in [
            "version: must be at least 1",
            "reward.percent: must be 1-90",
            "eligibility: cannot compare double `category_share(\"sushi\")` with string `\"high\"`",
            "channels.push.title: unknown variable `{{favourite_categry}}`",
        ] {
            assert!(e.contains(needle), "missing {needle:?} in\n{e}");
        }
        assert_eq!(e.lines().count(), 4, "{e}");
    }

    #[test]
    fn hostile_documents_are_refused_with_their_limit_not_a_crash() {
        let deep = format!("{}days_since_last_purchase{} > 1", "(".repeat(20_000), ")".repeat(20_000));
        let e = errors(
            &SAMPLE_YAML
                .replace("days_since_last_purchase >= 21 && category_share(\"sushi\") >= 0.2", &format!("'{deep}'")),
        );
        assert!(e.starts_with("eligibility: the expression is 40028 bytes; at most 4096"), "{e}");
        let nested = format!("{}x{} > 1", "(".repeat(100), ")".repeat(100));
        let e = errors(
            &SAMPLE_YAML
                .replace("days_since_last_purchase >= 21 && category_share(\"sushi\") >= 0.2", &format!("'{nested}'")),
        );
        assert!(e.contains("nested 100 deep"), "{e}");
        let e =
            errors(&format!("{SAMPLE_YAML}contact_policy: {{ caps: [{{ channel: push, max: 65, window: 7d }}] }}\n"));
        assert!(e.contains("contact_policy.caps[0].max: is 65; a profile keeps its last 64 contacts"), "{e}");
        let e = errors(&SAMPLE_YAML.replace("ttl: 48h", "ttl: 40000d"));
        assert!(e.contains("ttl: is longer than 3650d"), "{e}");
        let e = errors(&SAMPLE_YAML.replace("off tonight", &"x".repeat(MAX_TEMPLATE_BYTES)));
        assert!(e.contains("channels.push.body: is 1037 bytes; at most 1024"), "{e}");
        let yaml_bomb = format!("id: {}{}", "[".repeat(200_000), "]".repeat(200_000));
        assert!(errors(&yaml_bomb).contains("nested 200000 deep"), "refused before the YAML scanner sees it");
        let mut indented = String::from("id:\n");
        for depth in 1..1_000 {
            indented.push_str(&format!("{}a{depth}:\n", " ".repeat(depth)));
        }
        assert!(
            indented.len() < 512 << 10 && !errors(&indented).is_empty(),
            "deep block nesting: the parser's recursion limit"
        );
        let huge = format!("{SAMPLE_YAML}#{}", " ".repeat(super::super::MAX_DOCUMENT_BYTES));
        assert!(errors(&huge).contains("at most 524288 are accepted"));
    }

    #[test]
    fn rendered_text_is_cut_at_its_limit() {
        let def = OfferDefinition::parse("k", SAMPLE_YAML.as_bytes()).unwrap();
        let mut profile = Profile::default();
        profile.categories.push(CategoryAffinity { category: "é".repeat(3_000), score: 1.0, as_of_day: 0 });
        let features = Features::compute(&profile, EventFacts::default(), 0);
        let content = def.render(Channel::Push, &features, &def.discount(0));
        assert!(content.title.len() <= MAX_RENDERED_BYTES && content.title.len() > MAX_RENDERED_BYTES - 2);
    }

    #[test]
    fn type_errors_name_the_variable() {
        let e = errors(&SAMPLE_YAML.replace("days_since_last_purchase >= 21", "days_since_last_purchse >= 21"));
        assert!(
            e.contains(
                "eligibility: unknown variable `days_since_last_purchse`; did you mean `days_since_last_purchase`"
            ),
            "{e}"
        );
    }

    #[test]
    fn unknown_fields_are_rejected_with_their_path() {
        let e = errors(&SAMPLE_YAML.replace("ttl: 48h", "tll: 48h"));
        assert!(e.starts_with("tll: unknown field `tll`, expected one of"), "{e}");
        let e = errors(&SAMPLE_YAML.replace("kind: event, event: app_open", "kind: event, event: app_opn"));
        assert!(e.starts_with("trigger: unknown variant `app_opn`, expected one of `purchase`"), "{e}");
        let e = errors(&SAMPLE_YAML.replace("margin_per_redemption_minor", "margin_per_redemption"));
        assert!(e.starts_with("economics.margin_per_redemption:") && e.contains("unknown field"), "{e}");
    }

    #[test]
    fn ladders_go_deeper_per_contact_and_stop_at_the_last_step() {
        let d = OfferDefinition::parse(
            "k",
            SAMPLE_YAML.replace("reward: { percent: 10 }", "reward: { ladder_percent: [5, 10, 15] }").as_bytes(),
        )
        .unwrap();
        let steps: Vec<u32> = (0..5).map(|n| d.discount(n).percent).collect();
        assert_eq!(steps, [5, 10, 15, 15, 15]);
        let e = errors(&SAMPLE_YAML.replace("reward: { percent: 10 }", "reward: { ladder_percent: [10, 5] }"));
        assert!(e.contains("reward.ladder_percent[1]: is not above the previous step"), "{e}");
    }

    #[test]
    fn validity_window_and_status_decide_liveness() {
        let doc = SAMPLE_YAML.replace(
            "ttl: 48h",
            "ttl: 48h\nvalid_from: \"1970-01-02T00:00:00Z\"\nvalid_until: \"1970-01-03T00:00:00Z\"",
        );
        let d = OfferDefinition::parse("k", doc.as_bytes()).unwrap();
        let day = 86_400_000;
        assert!(!d.is_live(day - 1) && d.is_live(day) && !d.is_live(2 * day));
        let paused =
            OfferDefinition::parse("k", SAMPLE_YAML.replace("version: 1", "version: 1\nstatus: paused").as_bytes())
                .unwrap();
        assert!(!paused.is_live(0));
    }

    #[test]
    fn a_sweep_starts_at_its_time_inside_its_validity() {
        let doc = SAMPLE_YAML.replace(
            "trigger: { kind: event, event: app_open }",
            "trigger: { kind: sweep, at: \"1970-01-01T01:00:00Z\" }\nvalid_until: \"1970-01-01T02:00:00Z\"",
        );
        let d = OfferDefinition::parse("k", doc.as_bytes()).unwrap();
        let hour = 3_600_000;
        assert!(!d.sweep_due(hour - 1) && d.sweep_due(hour) && !d.sweep_due(2 * hour));
        assert!(!sample().sweep_due(hour), "event offers never sweep");
    }

    #[test]
    fn cascade_needs_both_channels() {
        let doc = SAMPLE_YAML.replace("ttl: 48h", "ttl: 48h\ncascade: { after: 4h, to: stories }");
        assert!(OfferDefinition::parse("k", doc.as_bytes()).is_ok());
        let no_stories: String =
            doc.lines().filter(|l| !l.contains("template: comeback")).collect::<Vec<_>>().join("\n");
        assert!(errors(&no_stories).contains("cascade.to: is stories, but channels.stories is missing"));
    }
}
