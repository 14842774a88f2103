//! An example Influxify plugin: `currency.convert` converts an amount between currencies.
//!
//! It fetches the day's exchange rates for the source currency from a Frankfurter-compatible
//! API (`GET {base_url}/latest?base=USD`, answering `{"base":"USD","rates":{"EUR":0.92,...}}`),
//! caches them in the plugin's kv store for `cache_minutes`, and answers with the
//! `unknown_currency` outcome when either currency is not known.

use std::collections::BTreeMap;

use influxify_plugin_sdk::kv::Scope;
use influxify_plugin_sdk::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where rates come from unless the `base_url` setting says otherwise.
const DEFAULT_BASE_URL: &str = "https://api.frankfurter.dev/v1";
/// How long fetched rates are used, unless the `cache_minutes` setting says otherwise.
const DEFAULT_CACHE_MINUTES: u64 = 30;
/// An API key, if the operator configured one (Frankfurter needs none).
const API_KEY: &str = "currency_api_key";

/// Converts an amount between currencies.
struct Convert;

/// What to convert.
#[derive(Deserialize, JsonSchema)]
struct Input {
    /// The amount, in `from`.
    amount: f64,
    /// The currency of `amount`: an ISO 4217 code such as `USD` (any case).
    from: String,
    /// The currency to convert to, such as `EUR`.
    to: String,
}

/// The converted amount; on `unknown_currency`, only `currency` is set: the code not known.
#[derive(Serialize, JsonSchema)]
struct Output {
    /// The amount in `currency`, rounded to 2 decimals.
    #[serde(skip_serializing_if = "Option::is_none")]
    amount: Option<f64>,
    /// The target currency's code (or, on `unknown_currency`, the unknown one).
    currency: String,
    /// How many units of `currency` one unit of `from` buys.
    #[serde(skip_serializing_if = "Option::is_none")]
    rate: Option<f64>,
}

impl Action for Convert {
    const NAME: &'static str = "convert";
    const DESCRIPTION: &'static str = "Converts an amount between currencies at today's rate";
    const OUTCOMES: &'static [&'static str] = &["unknown_currency"];
    type Input = Input;
    type Output = Output;

    fn run(input: Input, _ctx: &Context) -> Result<Outcome<Output>, Error> {
        let Some(from) = code(&input.from) else {
            return Ok(unknown_currency(&input.from));
        };
        let Some(to) = code(&input.to) else {
            return Ok(unknown_currency(&input.to));
        };
        let Some(rates) = rates(&from)? else {
            return Ok(unknown_currency(&from));
        };
        // The API lists the rates to every other currency.
        let rate = match rates.get(&to) {
            Some(rate) => *rate,
            None if to == from => 1.0,
            None => return Ok(unknown_currency(&to)),
        };
        Ok(Outcome::ok(Output {
            amount: Some((input.amount * rate * 100.0).round() / 100.0),
            currency: to,
            rate: Some(rate),
        }))
    }
}

influxify_plugin_sdk::plugin!(Currency: [Convert]);

fn unknown_currency(code: &str) -> Outcome<Output> {
    Outcome::named(
        "unknown_currency",
        Output {
            amount: None,
            currency: code.trim().to_ascii_uppercase(),
            rate: None,
        },
    )
}

/// `text` as a currency code (three ASCII letters, upper-cased), or `None`.
fn code(text: &str) -> Option<String> {
    let text = text.trim();
    (text.len() == 3 && text.bytes().all(|b| b.is_ascii_alphabetic()))
        .then(|| text.to_ascii_uppercase())
}

/// Rates for `base`, as kept in the kv store.
#[derive(Serialize, Deserialize)]
struct Cached {
    fetched_ms: u64,
    rates: BTreeMap<String, f64>,
}

/// What the API answers.
#[derive(Deserialize)]
struct Latest {
    rates: BTreeMap<String, f64>,
}

/// The rates for one unit of `base`, from the cache while they are fresh, else from the API;
/// `None` when the API does not know `base`.
fn rates(base: &str) -> Result<Option<BTreeMap<String, f64>>, Error> {
    let key = format!("rates/{base}");
    let now = clock::now_ms();
    let max_age_ms = config::parse_or("cache_minutes", DEFAULT_CACHE_MINUTES)? * 60_000;

    // A cache that does not work (no kv granted, a corrupt entry) only costs a request.
    let cached: Option<Cached> = kv::get_json(Scope::Plugin, &key).unwrap_or_else(|e| {
        warn!("rates cache unreadable: {e}");
        None
    });
    if let Some(cached) = &cached
        && now.saturating_sub(cached.fetched_ms) < max_age_ms
    {
        return Ok(Some(cached.rates.clone()));
    }

    let fetched = match fetch(base) {
        Ok(fetched) => fetched,
        // Stale rates beat no answer while the API is down.
        Err(e) if e.is_retryable() && cached.is_some() => {
            warn!("using stale {base} rates: {e}");
            return Ok(cached.map(|c| c.rates));
        }
        Err(e) => return Err(e),
    };
    let Some(rates) = fetched else {
        return Ok(None);
    };
    let entry = Cached {
        fetched_ms: now,
        rates,
    };
    if let Err(e) = kv::set_json(Scope::Plugin, &key, &entry) {
        warn!("rates not cached: {e}");
    }
    Ok(Some(entry.rates))
}

/// `GET {base_url}/latest?base={base}`; `None` when the API answers 404 or 422 (unknown base).
fn fetch(base: &str) -> Result<Option<BTreeMap<String, f64>>, Error> {
    let base_url = config::get_or("base_url", DEFAULT_BASE_URL);
    let mut request = http::get(format!("{}/latest", base_url.trim_end_matches('/')))
        .query("base", base)
        .header("Accept", "application/json")
        .timeout_ms(4_000);
    if secrets::available(API_KEY) {
        request = request.secret(API_KEY, http::Placement::Query("apikey".to_string()));
    }
    let response = request.send()?;
    if matches!(response.status, 404 | 422) {
        return Ok(None);
    }
    let latest: Latest = response.error_for_status()?.json()?;
    debug!("fetched {} rates for {base}", latest.rates.len());
    Ok(Some(latest.rates))
}
