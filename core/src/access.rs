//! Access control: the roles (**contract** names), their permissions (the matrix in `permissions.json`), the
//! [`Principal`] a credential resolves to, and the one authorizer, [`authorize`].
//!
//! Who the caller is comes from [`crate::auth`] (API keys) or [`crate::jwt`] (bearer tokens); both build a
//! [`Principal`]. What the caller may do is decided here only.

use crate::error::Reason;
use crate::error::{Error, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A role (**contract** names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, including key management and identifiable data.
    Admin,
    /// Exports of every kind, jobs, downloads.
    DataManager,
    /// Data, report and dashboard exports, jobs, downloads.
    Statistician,
    /// Reports and dashboards, reading jobs, downloads.
    Monitor,
    /// Reading jobs and the audit trail.
    Auditor,
    /// Machine callers: data and bulk exports, jobs, downloads.
    Integration,
    /// The platform's operator: manages organizations, studies and keys of every organization, and what the
    /// whole home shares (its key-encryption keys); reads no study data and cannot sign.
    Operator,
}

impl Role {
    /// All roles.
    pub const ALL: [Role; 7] = [
        Role::Admin,
        Role::DataManager,
        Role::Statistician,
        Role::Monitor,
        Role::Auditor,
        Role::Integration,
        Role::Operator,
    ];

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::DataManager => "data_manager",
            Role::Statistician => "statistician",
            Role::Monitor => "monitor",
            Role::Auditor => "auditor",
            Role::Integration => "integration",
            Role::Operator => "operator",
        }
    }

    /// Parses the snake_case name.
    ///
    /// # Errors
    /// EXP002 `invalid_role` with field `roles`.
    pub fn parse(s: &str) -> Result<Self> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                Error::validation(Reason::InvalidRole, format!("unknown role '{s}'"))
                    .with_field("roles")
            })
    }

    /// The permissions the role grants, as the embedded matrix `permissions.json` says (see [`permission_matrix`]).
    pub fn permissions(self) -> &'static [Permission] {
        &permission_matrix()[self as usize]
    }
}

/// The permission matrix as data: `core/src/permissions.json`, embedded at build time. `docs/permissions.md` shows
/// it as a table; a test fails when the two differ.
pub const PERMISSIONS_JSON: &str = include_str!("permissions.json");

/// The role→permissions table parsed from [`PERMISSIONS_JSON`], indexed in the order of [`Role::ALL`]; parsed
/// once, on first use.
pub fn permission_matrix() -> &'static [Vec<Permission>; 7] {
    static MATRIX: std::sync::OnceLock<[Vec<Permission>; 7]> = std::sync::OnceLock::new();
    MATRIX.get_or_init(|| {
        // The embedded file is fixed at build time and checked by the unit test
        // `the_embedded_permission_matrix_parses`: this cannot fail in a tested build.
        #[allow(clippy::expect_used)]
        parse_permission_matrix(PERMISSIONS_JSON)
            .expect("core/src/permissions.json is invalid: run the auth unit tests")
    })
}

/// Parses a permission matrix document, strictly: the keys `permissions` (every [`Permission`] exactly once, by its
/// [`Permission::as_str`] name) and `roles` (every [`Role`] exactly once, each with a list of listed permissions,
/// none twice), and an optional `comment`. Returns the permissions of each role in the order of [`Role::ALL`],
/// each list in the order of `permissions`.
///
/// # Errors
/// EXP002 `invalid_permission_matrix` naming the first problem (unknown, missing or repeated role or permission,
/// unknown key, wrong type).
pub fn parse_permission_matrix(text: &str) -> Result<[Vec<Permission>; 7]> {
    let bad = |what: String| {
        Error::validation(
            Reason::InvalidPermissionMatrix,
            format!("the permission matrix is invalid: {what}"),
        )
    };
    let doc: serde_json::Value =
        serde_json::from_str(text).map_err(|_| bad("it is not JSON".into()))?;
    let top = doc
        .as_object()
        .ok_or_else(|| bad("it is not an object".into()))?;
    if let Some(k) = top
        .keys()
        .find(|k| !matches!(k.as_str(), "comment" | "permissions" | "roles"))
    {
        return Err(bad(format!("unknown key '{k}'")));
    }
    let names = |v: &serde_json::Value, what: &str| -> Result<Vec<Permission>> {
        let list = v
            .as_array()
            .ok_or_else(|| bad(format!("{what} is not a list")))?;
        let mut out = Vec::with_capacity(list.len());
        for item in list {
            let name = item
                .as_str()
                .ok_or_else(|| bad(format!("{what} holds a non-string")))?;
            let p = Permission::parse(name)
                .ok_or_else(|| bad(format!("{what} names unknown permission '{name}'")))?;
            if out.contains(&p) {
                return Err(bad(format!("{what} names '{name}' twice")));
            }
            out.push(p);
        }
        Ok(out)
    };
    let order = names(
        top.get("permissions")
            .ok_or_else(|| bad("'permissions' is missing".into()))?,
        "'permissions'",
    )?;
    if let Some(p) = Permission::ALL.iter().find(|p| !order.contains(p)) {
        return Err(bad(format!("'permissions' lacks '{}'", p.as_str())));
    }
    let roles = top
        .get("roles")
        .and_then(|r| r.as_object())
        .ok_or_else(|| bad("'roles' is missing or not an object".into()))?;
    if let Some(k) = roles.keys().find(|k| Role::parse(k).is_err()) {
        return Err(bad(format!("unknown role '{k}'")));
    }
    let mut matrix: [Vec<Permission>; 7] = Default::default();
    for role in Role::ALL {
        let granted = names(
            roles
                .get(role.as_str())
                .ok_or_else(|| bad(format!("role '{}' is missing", role.as_str())))?,
            &format!("role '{}'", role.as_str()),
        )?;
        // Canonical order (that of `permissions`), whatever the order in the role's list.
        matrix[role as usize] = order
            .iter()
            .copied()
            .filter(|p| granted.contains(p))
            .collect();
    }
    Ok(matrix)
}

/// A permission an operation needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// `export_data`.
    ExportData,
    /// `export_report`.
    ExportReport,
    /// `export_dashboard`.
    ExportDashboard,
    /// `bulk_export`.
    ExportBulk,
    /// `list_jobs`, `get_job`, `wait`.
    JobsRead,
    /// `cancel`.
    JobsCancel,
    /// `download`.
    Download,
    /// `formats`.
    FormatsRead,
    /// Reading the audit trail (`audit:read`).
    AuditRead,
    /// Creating and revoking API keys.
    KeysManage,
    /// Exporting identifiable (PHI) data without de-identification.
    IdentifiableData,
    /// Expiring artifacts past their retention time now (`purge`; `retention:purge`).
    Purge,
    /// Binding studies to organizations (`studies:manage`; see [`crate::study`]).
    StudiesManage,
}

impl Permission {
    /// All permissions.
    pub const ALL: [Permission; 13] = [
        Permission::ExportData,
        Permission::ExportReport,
        Permission::ExportDashboard,
        Permission::ExportBulk,
        Permission::JobsRead,
        Permission::JobsCancel,
        Permission::Download,
        Permission::FormatsRead,
        Permission::AuditRead,
        Permission::KeysManage,
        Permission::IdentifiableData,
        Permission::Purge,
        Permission::StudiesManage,
    ];

    /// The permission named `name` (as [`Permission::as_str`] spells it), if any.
    pub fn parse(name: &str) -> Option<Permission> {
        Permission::ALL.into_iter().find(|p| p.as_str() == name)
    }

    /// The name used in errors and the audit trail, e.g. `export:data`.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::ExportData => "export:data",
            Permission::ExportReport => "export:report",
            Permission::ExportDashboard => "export:dashboard",
            Permission::ExportBulk => "export:bulk",
            Permission::JobsRead => "jobs:read",
            Permission::JobsCancel => "jobs:cancel",
            Permission::Download => "jobs:download",
            Permission::FormatsRead => "formats:read",
            Permission::AuditRead => "audit:read",
            Permission::KeysManage => "keys:manage",
            Permission::IdentifiableData => "data:identifiable",
            Permission::Purge => "retention:purge",
            Permission::StudiesManage => "studies:manage",
        }
    }
}

/// Who is calling: resolved from a credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    /// Stable subject id (for API keys: `apikey:<key id>`).
    pub subject: String,
    /// Printed name.
    pub name: String,
    /// Organization.
    pub org: String,
    /// Roles.
    pub roles: Vec<Role>,
    /// Studies the principal may touch; `["*"]` means all of the organization's.
    pub studies: Vec<String>,
    /// When the user last authenticated to the identity provider (a JWT's `auth_time`); `None` for API keys
    /// and tokens without the claim.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<DateTime<Utc>>,
}

impl Principal {
    /// Whether any role grants `p`.
    pub fn has(&self, p: Permission) -> bool {
        self.roles.iter().any(|r| r.permissions().contains(&p))
    }

    /// Whether the principal may touch `study`.
    pub fn sees_study(&self, study: &str) -> bool {
        self.studies.iter().any(|s| s == "*" || s == study)
    }

    /// Whether the principal holds `p` through the `operator` role, which grants its permissions in every
    /// organization (see [`authorize`]).
    pub fn operates(&self, p: Permission) -> bool {
        self.roles.contains(&Role::Operator) && Role::Operator.permissions().contains(&p)
    }

    /// The studies visible to the principal, `None` meaning all.
    pub fn study_scope(&self) -> Option<Vec<String>> {
        if self.studies.iter().any(|s| s == "*") {
            None
        } else {
            Some(self.studies.clone())
        }
    }
}

/// The one authorizer: does `principal` hold `permission` on `org` (and `study`, when given)? A permission held
/// through the `operator` role holds in every organization and study ([`Principal::operates`]).
///
/// # Errors
/// EXP003 `permission_denied` with details `permission`, and `scope` (`role`, `organization` or `study`).
pub fn authorize(
    principal: &Principal,
    permission: Permission,
    org: &str,
    study: Option<&str>,
) -> Result<()> {
    let deny = |scope: &str| {
        Err(Error::unauthorized(
            Reason::PermissionDenied,
            format!(
                "permission '{}' is not granted for this {scope}",
                permission.as_str()
            ),
        )
        .with_detail("permission", permission.as_str())
        .with_detail("scope", scope))
    };
    if !principal.has(permission) {
        return deny("role");
    }
    if principal.operates(permission) {
        return Ok(());
    }
    if principal.org != org {
        return deny("organization");
    }
    if let Some(study) = study {
        if !principal.sees_study(study) {
            return deny("study");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_permission_matrix_parses() {
        let m = parse_permission_matrix(PERMISSIONS_JSON).unwrap();
        for (i, role) in Role::ALL.into_iter().enumerate() {
            // `Role::permissions` indexes the table by discriminant: it must be the position in `Role::ALL`.
            assert_eq!(role as usize, i);
            assert_eq!(role.permissions(), &m[i][..]);
        }
        // Every permission is granted to someone; only `admin` holds the PHI permission and key management.
        for p in Permission::ALL {
            // Exhaustive: a new variant fails to compile here until it is listed in `Permission::ALL`.
            match p {
                Permission::ExportData
                | Permission::ExportReport
                | Permission::ExportDashboard
                | Permission::ExportBulk
                | Permission::JobsRead
                | Permission::JobsCancel
                | Permission::Download
                | Permission::FormatsRead
                | Permission::AuditRead
                | Permission::KeysManage
                | Permission::IdentifiableData
                | Permission::Purge
                | Permission::StudiesManage => {}
            }
            assert!(Role::ALL.iter().any(|r| r.permissions().contains(&p)));
            assert_eq!(Permission::parse(p.as_str()), Some(p));
        }
        let holders = |p| {
            Role::ALL
                .into_iter()
                .filter(|r| r.permissions().contains(&p))
                .collect::<Vec<_>>()
        };
        assert_eq!(holders(Permission::IdentifiableData), [Role::Admin]);
        assert_eq!(
            holders(Permission::KeysManage),
            [Role::Admin, Role::Operator]
        );
        assert_eq!(holders(Permission::StudiesManage), [Role::Operator]);
        // The operator reads no study data: no export, job, download, audit or PHI permission.
        assert_eq!(
            Role::Operator.permissions(),
            [
                Permission::FormatsRead,
                Permission::KeysManage,
                Permission::Purge,
                Permission::StudiesManage
            ]
        );
    }

    #[test]
    fn permission_matrices_are_parsed_strictly() {
        let doc: serde_json::Value = serde_json::from_str(PERMISSIONS_JSON).unwrap();
        let check = |edit: &dyn Fn(&mut serde_json::Value), problem: &str| {
            let mut d = doc.clone();
            edit(&mut d);
            let e = parse_permission_matrix(&d.to_string()).unwrap_err();
            assert_eq!(e.reason(), "invalid_permission_matrix");
            assert!(e.to_string().contains(problem), "{e} lacks {problem}");
        };
        check(
            &|d| d["roles"]["root"] = serde_json::json!([]),
            "unknown role 'root'",
        );
        check(
            &|d| {
                d["roles"].as_object_mut().unwrap().remove("auditor");
            },
            "role 'auditor' is missing",
        );
        check(
            &|d| d["roles"]["monitor"] = serde_json::json!(["export:everything"]),
            "unknown permission 'export:everything'",
        );
        check(
            &|d| d["roles"]["monitor"] = serde_json::json!(["jobs:read", "jobs:read"]),
            "'jobs:read' twice",
        );
        check(
            &|d| {
                d["permissions"].as_array_mut().unwrap().pop();
            },
            "lacks 'studies:manage'",
        );
        check(
            &|d| d["extra"] = serde_json::json!(1),
            "unknown key 'extra'",
        );
        check(
            &|d| d["roles"]["admin"] = serde_json::json!("all"),
            "not a list",
        );
        assert!(parse_permission_matrix("not json").is_err());
        // A role's list in another order still yields the canonical order.
        let mut d = doc.clone();
        d["roles"]["auditor"] = serde_json::json!(["audit:read", "formats:read", "jobs:read"]);
        let m = parse_permission_matrix(&d.to_string()).unwrap();
        assert_eq!(
            m[Role::Auditor as usize],
            [
                Permission::JobsRead,
                Permission::FormatsRead,
                Permission::AuditRead
            ]
        );
    }

    #[test]
    fn authorization_checks_role_org_and_study() {
        let p = Principal {
            subject: "u".into(),
            name: "U".into(),
            org: "acme".into(),
            roles: vec![Role::Monitor],
            studies: vec!["S1".into()],
            auth_time: None,
        };
        authorize(&p, Permission::ExportReport, "acme", Some("S1")).unwrap();
        let scope = |r: Result<()>| r.unwrap_err().details()["scope"].clone();
        assert_eq!(
            scope(authorize(&p, Permission::ExportData, "acme", Some("S1"))),
            "role"
        );
        assert_eq!(
            scope(authorize(&p, Permission::ExportReport, "other", Some("S1"))),
            "organization"
        );
        assert_eq!(
            scope(authorize(&p, Permission::ExportReport, "acme", Some("S2"))),
            "study"
        );
    }
}
