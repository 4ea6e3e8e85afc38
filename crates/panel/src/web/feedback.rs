//! What a page says back after a form post: a confirmation, or the error
//! placed next to the field at fault, with the posted values kept.
//!
//! Errors are not invented here: they are the store's and the model's
//! ([`crate::store::StoreError`] through [`ApiError`], the same mapping and
//! messages as the JSON API). Their field names are the API's
//! (`rules[2].sources[0]`, `ports`, `server_ids[1]`); [`form_field`] turns
//! them into the name of the form's input (`sources`, `port`, `server_id`).
//! An error that names no field of the posted form (a limit on the whole
//! firewall, a stale revision) is shown above that form instead.

use super::context::FormData;
use crate::error::ApiError;
use axum::http::StatusCode;

/// How a failed change is shown.
#[derive(Debug, Clone)]
pub enum Problem {
    /// Next to one field of the posted form (or above it, if the form has no
    /// such field).
    Field {
        status: StatusCode,
        field: String,
        message: String,
    },
    /// Above the form: the request as a whole cannot be done.
    Banner { status: StatusCode, message: String },
    /// A whole-page error: not found (404) or internal (500).
    Page(ApiError),
}

impl Problem {
    /// Places an API/store error: 404 and 5xx are whole-page errors, a stale
    /// revision (412) is a banner with advice, anything naming a field goes
    /// next to it.
    pub fn of(e: ApiError) -> Problem {
        match e.status {
            StatusCode::NOT_FOUND => Problem::Page(e),
            s if s.is_server_error() => Problem::Page(e),
            StatusCode::PRECONDITION_FAILED => Problem::Banner {
                status: e.status,
                message: "This firewall was changed (in another tab, by a colleague or over the API) since this page was loaded. The page now shows its current state: check it and try again.".into(),
            },
            status => match e.field.as_deref() {
                Some(field) if !field.is_empty() && field != "If-Match" && field != "body" => {
                    Problem::Field {
                        status,
                        field: form_field(field),
                        message: e.message,
                    }
                }
                _ => Problem::Banner {
                    status,
                    message: e.message,
                },
            },
        }
    }

    /// A field error made by a page itself (e.g. "choose a server").
    pub fn field(field: &str, message: impl Into<String>) -> Problem {
        Problem::Field {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            field: field.to_string(),
            message: message.into(),
        }
    }
}

impl From<crate::store::StoreError> for Problem {
    fn from(e: crate::store::StoreError) -> Problem {
        Problem::of(e.into())
    }
}

/// The form input an API field name refers to: the last path segment
/// without its index (`rules[2].sources[0]` → `sources`), with the API's
/// plurals mapped to the form's names (`ports` → `port`, `server_ids` →
/// `server_id`).
pub fn form_field(api_field: &str) -> String {
    let last = api_field.rsplit('.').next().unwrap_or(api_field);
    let name = last.split('[').next().unwrap_or(last);
    match name {
        "ports" => "port",
        "server_ids" => "server_id",
        other => other,
    }
    .to_string()
}

/// The state of a page after a post: which form was posted, its values, and
/// the messages to show.
#[derive(Debug, Clone)]
pub struct Feedback {
    /// The form that was posted (`rule`, `assign-server`, ...), if any.
    pub form: Option<&'static str>,
    /// Its values, to fill the inputs in again.
    pub values: FormData,
    /// (form field, message) pairs.
    pub errors: Vec<(String, String)>,
    /// A message above the posted form (or the page, if no form).
    pub banner: Option<String>,
    /// A confirmation after a successful change.
    pub flash: Option<String>,
    /// The HTTP status of the page.
    pub status: StatusCode,
}

impl Default for Feedback {
    fn default() -> Feedback {
        Feedback {
            form: None,
            values: FormData::default(),
            errors: Vec::new(),
            banner: None,
            flash: None,
            status: StatusCode::OK,
        }
    }
}

impl Feedback {
    /// A page with a confirmation message (or none).
    pub fn flash(message: Option<String>) -> Feedback {
        Feedback {
            flash: message,
            ..Feedback::default()
        }
    }

    /// `form` was posted with `values` and failed with `problem` (a field or
    /// banner problem; whole-page problems are answered before this).
    pub fn failed(form: &'static str, values: FormData, problem: Problem) -> Feedback {
        let mut fb = Feedback {
            form: Some(form),
            values,
            ..Feedback::default()
        };
        match problem {
            Problem::Field {
                status,
                field,
                message,
            } => {
                fb.status = status;
                fb.errors.push((field, message));
            }
            Problem::Banner { status, message } => {
                fb.status = status;
                fb.banner = Some(message);
            }
            Problem::Page(e) => {
                fb.status = e.status;
                fb.banner = Some(e.message);
            }
        }
        fb
    }

    /// Whether `form` is the one that was posted.
    pub fn posted(&self, form: &str) -> bool {
        self.form == Some(form)
    }

    /// The posted value of a field of `form`, if that form was posted.
    pub fn value(&self, form: &str, field: &str) -> Option<&str> {
        self.posted(form).then(|| self.values.get(field))
    }

    /// The error of a field of `form`.
    pub fn error(&self, form: &str, field: &str) -> Option<&str> {
        if !self.posted(form) {
            return None;
        }
        self.errors
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, m)| m.as_str())
    }

    /// The messages to show above `form`: its banner, and errors about fields
    /// it does not have.
    pub fn above(&self, form: &str, fields: &[&str]) -> Vec<&str> {
        if !self.posted(form) {
            return Vec::new();
        }
        self.banner
            .iter()
            .map(String::as_str)
            .chain(
                self.errors
                    .iter()
                    .filter(|(f, _)| !fields.contains(&f.as_str()))
                    .map(|(_, m)| m.as_str()),
            )
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;

    #[test]
    fn api_field_names_map_to_form_inputs() {
        assert_eq!(form_field("rules[2].sources[0]"), "sources");
        assert_eq!(form_field("sources[3]"), "sources");
        assert_eq!(form_field("ports"), "port");
        assert_eq!(form_field("port"), "port");
        assert_eq!(form_field("server_ids[1]"), "server_id");
        assert_eq!(form_field("selector"), "selector");
        assert_eq!(form_field("name"), "name");
    }

    #[test]
    fn problems_are_placed_by_kind() {
        let p = Problem::from(StoreError::Invalid {
            field: "sources[0]".into(),
            message: "bad".into(),
        });
        assert!(
            matches!(&p, Problem::Field { status, field, message }
                if *status == StatusCode::UNPROCESSABLE_ENTITY && field == "sources" && message == "bad"),
            "{p:?}"
        );
        assert!(matches!(
            Problem::from(StoreError::NotFound("firewall 3".into())),
            Problem::Page(e) if e.status == StatusCode::NOT_FOUND
        ));
        assert!(matches!(
            Problem::from(StoreError::Precondition { current: 9, what: "firewall" }),
            Problem::Banner { status, .. } if status == StatusCode::PRECONDITION_FAILED
        ));
        assert!(matches!(
            Problem::from(StoreError::Conflict { field: Some("name".into()), message: "taken".into() }),
            Problem::Field { status, .. } if status == StatusCode::CONFLICT
        ));
    }

    #[test]
    fn feedback_belongs_to_the_posted_form() {
        let values = FormData(vec![("port".into(), "70000".into())]);
        let fb = Feedback::failed("rule", values, Problem::field("port", "ports are 1-65535"));
        assert_eq!(fb.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(fb.error("rule", "port"), Some("ports are 1-65535"));
        assert_eq!(fb.error("assign-server", "port"), None);
        assert_eq!(fb.value("rule", "port"), Some("70000"));
        assert_eq!(fb.value("settings", "port"), None);
        assert!(fb.above("rule", &["port"]).is_empty());
        assert_eq!(fb.above("rule", &["sources"]), vec!["ports are 1-65535"]);
    }
}
