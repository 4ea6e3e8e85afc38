//! nft's JSON commands → one nf_tables netlink batch, through the same
//! emitters as the typed path ([`crate::netlink::encode`]): for JSON given as
//! input ([`crate::Kernel::apply_json`]) and the oracle tests, which apply the
//! same JSON with `nft -f` and over netlink and compare the tables.

use super::values::JsonValues;
use crate::netlink::encode::{
    apply_prefix, ct_left, meta_left, payload_left, scalar_into, seconds_per, Batch, Elems, Hook,
    Key, Left, LimitSpec, Lin, SetInfo, Verb, LOG_LEVELS,
};
use crate::netlink::types::*;
use crate::netlink::Error;
use serde_json::Value;

fn json_scalar(t: DataType, v: &Value) -> Result<Option<Scalar<'_>>, String> {
    Ok(match v {
        Value::String(s) => Some(Scalar::Str(s)),
        Value::Number(n) => {
            Some(Scalar::Num(n.as_u64().ok_or_else(|| {
                format!("'{n}' is not a valid {}", t.name())
            })?))
        }
        _ => None,
    })
}

/// One field of an element from nft JSON: a value, a prefix or a range.
fn field_json(t: DataType, v: &Value, start: &mut [u8], end: &mut [u8]) -> Result<(), String> {
    let scalar = |v| json_scalar(t, v);
    if let Some(s) = scalar(v)? {
        scalar_into(t, s, start)?;
        end[..t.len()].copy_from_slice(&start[..t.len()]);
        return Ok(());
    }
    if let Some(p) = v.get("prefix") {
        let addr = scalar(&p["addr"])?.ok_or_else(|| format!("bad prefix {v}"))?;
        scalar_into(t, addr, start)?;
        let bits = p["len"]
            .as_u64()
            .ok_or_else(|| format!("bad prefix length in {v}"))? as u32;
        return apply_prefix(bits, t.len(), start, end);
    }
    if let Some(r) = v.get("range").and_then(Value::as_array) {
        if r.len() == 2 {
            let a = scalar(&r[0])?.ok_or_else(|| format!("bad range {v}"))?;
            let b = scalar(&r[1])?.ok_or_else(|| format!("bad range {v}"))?;
            scalar_into(t, a, start)?;
            return scalar_into(t, b, end);
        }
    }
    if let Some(inner) = v.get("elem") {
        return field_json(t, &inner["val"], start, end);
    }
    Err(format!("'{v}' is not a valid {} element", t.name()))
}

/// The tables whose sets a JSON batch may use without creating them: every
/// table an element or a rule command names (read before encoding).
pub(crate) fn tables_named(cmds: &[Value]) -> Vec<(u8, String)> {
    let mut out: Vec<(u8, String)> = Vec::new();
    let mut need = |v: &Value| {
        let named = v
            .get("family")
            .and_then(Value::as_str)
            .and_then(family_number)
            .zip(v.get("table").and_then(Value::as_str));
        if let Some((family, table)) = named {
            if !out.iter().any(|(f, t)| *f == family && t == table) {
                out.push((family, table.to_string()));
            }
        }
    };
    for (key, body) in cmds.iter().filter_map(Value::as_object).flatten() {
        // `{"add": {"element": {...}}}`, or a bare `{"element": {...}}`.
        match key.as_str() {
            "element" | "rule" => need(body),
            _ => {
                for (kind, v) in body.as_object().into_iter().flatten() {
                    if kind == "element" || kind == "rule" {
                        need(v);
                    }
                }
            }
        }
    }
    out
}

/// The keys of a set's elements as nft's JSON gives them, laid out as the
/// kernel holds them.
fn json_keys(set: &SetInfo, elems: &[Value]) -> Result<Vec<Key>, Error> {
    let bad = |e: String| Error::Invalid(format!("set {}: {e}", set.name));
    let concat = set.concat();
    elems
        .iter()
        .map(|v| {
            let mut k = Key {
                start: [0; 64],
                end: [0; 64],
                len: set.key_len(),
            };
            if k.len > 64 {
                return Err(bad(format!(
                    "set {} has a key longer than 64 bytes",
                    set.name
                )));
            }
            let mut val = v;
            if let Some(inner) = val.get("elem") {
                val = &inner["val"];
            }
            let parts: Vec<&Value> = if concat {
                val.get("concat")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().collect())
                    .ok_or_else(|| bad(format!("'{val}' is not a concatenation")))?
            } else {
                vec![val]
            };
            if parts.len() != set.types.len() {
                return Err(bad(format!(
                    "'{val}' has {} fields, the set's key {}",
                    parts.len(),
                    set.types.len()
                )));
            }
            let mut off = 0;
            for (t, p) in set.types.iter().zip(parts) {
                field_json(*t, p, &mut k.start[off..], &mut k.end[off..]).map_err(bad)?;
                off += if concat { reg_space(t.len()) } else { t.len() };
            }
            Ok(k)
        })
        .collect()
}

fn str_of<'v>(v: &'v Value, key: &str, what: &str) -> Result<&'v str, Error> {
    v.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| Error::Unsupported(format!("{what} without '{key}': {v}")))
}

fn family_of(v: &Value, what: &str) -> Result<u8, Error> {
    let f = str_of(v, "family", what)?;
    family_number(f).ok_or_else(|| Error::Invalid(format!("'{f}' is not a family")))
}

fn hook_from_json<'a>(hook: &str, v: &'a Value) -> Result<Hook<'a>, Error> {
    let hooknum =
        hook_number(hook).ok_or_else(|| Error::Invalid(format!("'{hook}' is not a hook")))?;
    let prio: i32 = match v.get("prio") {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0) as i32,
        Some(Value::String(s)) => match s.as_str() {
            "raw" => -300,
            "mangle" => -150,
            "dstnat" => -100,
            "filter" => 0,
            "security" => 50,
            "srcnat" => 100,
            other => return Err(Error::Unsupported(format!("chain priority '{other}'"))),
        },
        _ => 0,
    };
    let policy = match v.get("policy").and_then(Value::as_str) {
        None => None,
        Some("accept") => Some(NF_ACCEPT as u32),
        Some("drop") => Some(NF_DROP as u32),
        Some(other) => return Err(Error::Invalid(format!("'{other}' is not a policy"))),
    };
    Ok(Hook {
        hooknum,
        prio,
        ty: v.get("type").and_then(Value::as_str).unwrap_or("filter"),
        policy,
        dev: v.get("dev").and_then(Value::as_str),
    })
}

fn limit_from_json(l: &Value) -> Result<LimitSpec, Error> {
    let bad = || Error::Unsupported(format!("limit {l}"));
    let rate = l.get("rate").and_then(Value::as_u64).ok_or_else(bad)?;
    let unit =
        seconds_per(l.get("per").and_then(Value::as_str).unwrap_or("second")).ok_or_else(bad)?;
    if l.get("rate_unit").is_some_and(|u| u != "packets") {
        return Err(bad());
    }
    Ok(LimitSpec {
        rate,
        unit,
        burst: l.get("burst").and_then(Value::as_u64).unwrap_or(5) as u32,
        inv: l.get("inv").and_then(Value::as_bool).unwrap_or(false),
    })
}

impl Batch {
    /// One command of an nft JSON batch (`{"add": {"table": {...}}}` and so on).
    pub(crate) fn command(&mut self, obj: &Value) -> Result<(), Error> {
        let Some(map) = obj.as_object() else {
            return Err(Error::Unsupported(format!("not a command: {obj}")));
        };
        for (verb, body) in map {
            if verb == "metainfo" {
                continue;
            }
            match Verb::from_name(verb) {
                Some(v) => {
                    let Some(inner) = body.as_object() else {
                        return Err(Error::Unsupported(format!("{verb} of {body}")));
                    };
                    for (kind, o) in inner {
                        self.object(v, kind, o)?;
                    }
                }
                // A bare object is an implicit add.
                None => self.object(Verb::Add, verb, body)?,
            }
        }
        Ok(())
    }

    /// One object of an nft JSON command.
    fn object(&mut self, verb: Verb, kind: &str, v: &Value) -> Result<(), Error> {
        let family = family_of(v, kind)?;
        let s = |key: &str| str_of(v, key, kind);
        match (verb, kind) {
            (_, "table") => self.table(verb, family, s("name")?),
            (Verb::Add | Verb::Create, "chain") => {
                let hook = match v.get("hook").and_then(Value::as_str) {
                    None => None,
                    Some(hook) => Some(hook_from_json(hook, v)?),
                };
                self.chain(verb, family, s("table")?, s("name")?, hook);
                Ok(())
            }
            (_, "chain") => self.table_object(verb, family, kind, s("table")?, s("name")?),
            (Verb::Add | Verb::Create, "set") => {
                let (set, size, counter) = Self::set_from_json(v)?;
                let keys = match v.get("elem").and_then(Value::as_array) {
                    Some(a) => Some(json_keys(&set, a)?),
                    None => None,
                };
                let elems = keys.as_deref().map(Elems::Keys);
                let size = crate::netlink::encode::SetSize {
                    elements: size,
                    gc_interval_ms: v
                        .get("gc-interval")
                        .and_then(Value::as_u64)
                        .map(|s| u32::try_from(s.saturating_mul(1000)).unwrap_or(u32::MAX)),
                };
                self.set(verb, family, s("table")?, set, size, counter, elems)
            }
            (_, "set") => self.table_object(verb, family, kind, s("table")?, s("name")?),
            (Verb::Flush, "element") | (Verb::Insert, "element") => {
                Err(Error::Unsupported(format!(
                    "'{} {kind}' is not supported by the netlink backend",
                    verb.as_str()
                )))
            }
            (_, "element") => {
                let elems = v
                    .get("elem")
                    .and_then(Value::as_array)
                    .map(Vec::as_slice)
                    .unwrap_or(&[]);
                let (table, name) = (s("table")?, s("name")?);
                let set = self.set_info(family, table, name)?;
                let keys = json_keys(&set, elems)?;
                self.element_command(verb, family, table, name, Elems::Keys(&keys))
            }
            (Verb::Add | Verb::Create | Verb::Insert, "rule") => {
                let stmts = v
                    .get("expr")
                    .and_then(Value::as_array)
                    .ok_or_else(|| Error::Invalid(format!("rule without 'expr': {v}")))?;
                let mut lin = Lin::new(family);
                let table = s("table")?;
                for st in stmts {
                    lin.stmt(self, table, st)?;
                }
                let comment = v.get("comment").and_then(Value::as_str);
                self.rule(verb, family, table, s("chain")?, comment, lin);
                Ok(())
            }
            (Verb::Delete | Verb::Destroy, "rule") => {
                let handle = v
                    .get("handle")
                    .and_then(Value::as_u64)
                    .ok_or_else(|| Error::Invalid(format!("delete rule needs a handle: {v}")))?;
                self.delete_rule(verb, family, s("table")?, s("chain")?, handle);
                Ok(())
            }
            _ => Err(Error::Unsupported(format!(
                "'{} {kind}' is not supported by the netlink backend",
                verb.as_str()
            ))),
        }
    }

    /// The set's header from JSON (its `elem` are sent by the caller).
    fn set_from_json(v: &Value) -> Result<(SetInfo, Option<u32>, bool), Error> {
        let name = str_of(v, "name", "set")?;
        let types: Vec<DataType> = match v.get("type") {
            Some(Value::String(s)) => vec![DataType::from_name(s)
                .ok_or_else(|| Error::Unsupported(format!("set type '{s}'")))?],
            Some(Value::Array(a)) => a
                .iter()
                .map(|t| {
                    t.as_str()
                        .and_then(DataType::from_name)
                        .ok_or_else(|| Error::Unsupported(format!("set type '{t}'")))
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(Error::Unsupported(format!("set without a type: {v}"))),
        };
        let mut flags = 0;
        for f in v
            .get("flags")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            flags |= match f.as_str() {
                Some("interval") => NFT_SET_INTERVAL,
                Some("constant") => NFT_SET_CONSTANT,
                Some(other) => return Err(Error::Unsupported(format!("set flag '{other}'"))),
                None => 0,
            };
        }
        if types.len() > 1 && flags & NFT_SET_INTERVAL != 0 {
            flags |= NFT_SET_CONCAT;
        }
        for unsupported in ["timeout", "gc-interval", "policy", "comment", "map"] {
            if v.get(unsupported).is_some_and(|x| !x.is_null()) {
                return Err(Error::Unsupported(format!("set property '{unsupported}'")));
            }
        }
        let mut counter = false;
        for s in v
            .get("stmt")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if s.get("counter").is_some() {
                counter = true;
            } else {
                return Err(Error::Unsupported(format!("set statement {s}")));
            }
        }
        let size = v.get("size").and_then(Value::as_u64).map(|s| s as u32);
        Ok((
            SetInfo {
                name: name.to_string(),
                types,
                flags,
                id: None,
            },
            size,
            counter,
        ))
    }
}

fn left_of(v: &Value) -> Result<Left, Error> {
    let unsupported = || Error::Unsupported(format!("expression {v}"));
    fn str_at<'v>(o: &'v Value, k: &str) -> Option<&'v str> {
        o.get(k).and_then(Value::as_str)
    }
    if let Some(m) = v.get("meta") {
        let key = str_at(m, "key").ok_or_else(unsupported)?;
        return meta_left(key).ok_or_else(unsupported);
    }
    if let Some(p) = v.get("payload") {
        let (proto, field) = str_at(p, "protocol")
            .zip(str_at(p, "field"))
            .ok_or_else(unsupported)?;
        return payload_left(proto, field).ok_or_else(unsupported);
    }
    if let Some(c) = v.get("ct") {
        let dir = match c.get("dir").and_then(Value::as_str) {
            None => None,
            Some("original") => Some(IP_CT_DIR_ORIGINAL),
            Some("reply") => Some(IP_CT_DIR_REPLY),
            Some(_) => return Err(unsupported()),
        };
        let key = str_at(c, "key").ok_or_else(unsupported)?;
        return ct_left(key, dir).ok_or_else(unsupported);
    }
    Err(unsupported())
}

impl Lin {
    /// One statement of nft's JSON.
    fn stmt(&mut self, b: &mut Batch, table: &str, s: &Value) -> Result<(), Error> {
        let unsupported = || Error::Unsupported(format!("statement {s}"));
        let Some(obj) = s.as_object() else {
            return Err(unsupported());
        };
        let Some((name, body)) = obj.iter().next() else {
            return Err(unsupported());
        };
        match name.as_str() {
            "match" => self.matches(b, table, body),
            "counter" => {
                self.expr("counter", |_| {});
                Ok(())
            }
            "accept" => {
                self.verdict(NF_ACCEPT, None);
                Ok(())
            }
            "drop" => {
                self.verdict(NF_DROP, None);
                Ok(())
            }
            "continue" => {
                self.verdict(NFT_CONTINUE, None);
                Ok(())
            }
            "return" => {
                self.verdict(NFT_RETURN, None);
                Ok(())
            }
            "jump" | "goto" => {
                let target = body
                    .get("target")
                    .and_then(Value::as_str)
                    .ok_or_else(unsupported)?;
                let code = if name == "jump" { NFT_JUMP } else { NFT_GOTO };
                self.verdict(code, Some(target));
                Ok(())
            }
            "limit" => {
                let spec = limit_from_json(body)?;
                self.limit(spec);
                Ok(())
            }
            "log" => self.log(body),
            "reject" => {
                let ty = body.get("type").and_then(Value::as_str);
                let code = body.get("expr").and_then(Value::as_str);
                self.reject(ty, code, &|| Error::Unsupported(format!("reject {body}")))
            }
            "meter" => self.meter(b, body),
            _ => Err(unsupported()),
        }
    }

    fn log(&mut self, l: &Value) -> Result<(), Error> {
        let bad = || Error::Unsupported(format!("log {l}"));
        let prefix = l.get("prefix").and_then(Value::as_str);
        let level = match l.get("level").and_then(Value::as_str) {
            None => None,
            Some(s) => Some(LOG_LEVELS.iter().position(|x| *x == s).ok_or_else(bad)? as u32),
        };
        let mut flags = 0u32;
        for f in l
            .get("flags")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            flags |= match f.as_str() {
                Some("tcp sequence") => NF_LOG_TCPSEQ,
                Some("tcp options") => NF_LOG_TCPOPT,
                Some("ip options") => NF_LOG_IPOPT,
                Some("skuid") => NF_LOG_UID,
                Some("ether") => NF_LOG_MACDECODE,
                Some("all") => NF_LOG_MASK,
                _ => return Err(bad()),
            };
        }
        if l.get("group").is_some() || l.get("snaplen").is_some() {
            return Err(bad());
        }
        self.emit_log(prefix, level, flags);
        Ok(())
    }

    fn meter(&mut self, b: &mut Batch, m: &Value) -> Result<(), Error> {
        let bad = || Error::Unsupported(format!("meter {m}"));
        let name = m.get("name").and_then(Value::as_str).ok_or_else(bad)?;
        let key = left_of(m.get("key").ok_or_else(bad)?)?;
        let inner = m.get("stmt").ok_or_else(bad)?;
        let limit = limit_from_json(inner.get("limit").ok_or_else(bad)?)?;
        let size = m.get("size").and_then(Value::as_u64).unwrap_or(0xffff) as u32;
        self.emit_meter(b, name, &key, limit, size)
    }

    /// A match of nft's JSON.
    fn matches(&mut self, b: &mut Batch, table: &str, m: &Value) -> Result<(), Error> {
        let bad = || Error::Unsupported(format!("match {m}"));
        let op = m.get("op").and_then(Value::as_str).unwrap_or("==");
        let left = m.get("left").ok_or_else(bad)?;
        let right = m.get("right").ok_or_else(bad)?;
        // Set lookup.
        if let Some(name) = right.as_str().and_then(|s| s.strip_prefix('@')) {
            let fields: Vec<Left> = match left.get("concat").and_then(Value::as_array) {
                Some(parts) => parts.iter().map(left_of).collect::<Result<_, _>>()?,
                None => vec![left_of(left)?],
            };
            return self.lookup(b, table, name, &fields, op, &bad);
        }
        let l = left_of(left)?;
        self.deps(&l)?;
        // ct state and other flags: a list (or `in`) tests for any of the bits.
        if l.dt == DataType::CtState && (op == "in" || (right.is_array() && op != "==")) {
            let mask = l.dt.parse(right).map_err(Error::Invalid)?;
            self.any_bit(&l, &mask, op);
            return Ok(());
        }
        if let Some(r) = right.get("range").and_then(Value::as_array) {
            if r.len() != 2 || l.host {
                return Err(bad());
            }
            let lo = l.dt.parse(&r[0]).map_err(Error::Invalid)?;
            let hi = l.dt.parse(&r[1]).map_err(Error::Invalid)?;
            return self.range(&l, &lo, &hi, op, &bad);
        }
        if let Some(p) = right.get("prefix") {
            if !l.dt.prefixes() {
                return Err(bad());
            }
            let mut start = [0u8; 64];
            let mut end = [0u8; 64];
            field_json(l.dt, right, &mut start, &mut end).map_err(Error::Invalid)?;
            let bits = p.get("len").and_then(Value::as_u64).ok_or_else(bad)? as usize;
            return self.prefix(&l, &start, bits, op, &bad);
        }
        if right.is_array() && l.dt != DataType::CtState {
            return Err(Error::Unsupported(format!("anonymous set in {m}")));
        }
        if l.dt == DataType::Ifname && right.as_str().is_some_and(|s| s.ends_with('*')) {
            return Err(Error::Unsupported(format!("interface wildcard in {m}")));
        }
        let data = l.dt.parse(right).map_err(Error::Invalid)?;
        self.compare(&l, &data, op, &bad)
    }
}
