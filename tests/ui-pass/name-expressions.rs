#![deny(warnings)]
// `name = <expression>`: a constant or static is read once per process, like a literal; an
// expression that uses the call (an argument, a generic parameter, `Self`, `self`) is evaluated
// at each call. Any string type will do (`AsRef<str>`).

use lockmacro_runtime::{exclusive, Lock};

const JOB: &str = "lockmacro-ui-pass-name-const";
static JOB_STATIC: &str = "lockmacro-ui-pass-name-static";

mod config {
    pub const JOB: &str = "lockmacro-ui-pass-name-module";
}

#[exclusive(name = JOB, on_conflict = "skip")]
fn from_const() -> Option<&'static str> {
    Some(JOB)
}

#[exclusive(name = JOB_STATIC, wait)]
fn from_static() -> &'static str {
    JOB_STATIC
}

#[exclusive(name = config::JOB, wait)]
fn from_module() -> &'static str {
    config::JOB
}

#[exclusive(name = format!("lockmacro-ui-pass-tenant-{id}"), on_conflict = "skip")]
fn tenant(id: u32) -> Option<u32> {
    Some(id)
}

#[exclusive(name = tenant, wait)]
fn by_name(tenant: &str) -> usize {
    tenant.len()
}

#[exclusive(name = &owned, wait)]
fn by_string(owned: String) -> String {
    owned
}

// Nested calls with a per-call name take part in the call chain: recursion does not deadlock.
#[exclusive(name = format!("lockmacro-ui-pass-walk-{id}"), wait)]
fn walk(id: u32, depth: u32) -> u32 {
    if depth == 0 {
        // Still held by the outermost call while the innermost runs.
        assert!(Lock::new(format!("lockmacro-ui-pass-walk-{id}"))
            .try_acquire()
            .is_err());
        return 0;
    }
    1 + walk(id, depth - 1)
}

trait Named {
    const NAME: &'static str;
}

struct Backup;

impl Named for Backup {
    const NAME: &'static str = "lockmacro-ui-pass-name-generic";
}

#[exclusive(name = T::NAME, wait)]
fn generic<T: Named>() -> &'static str {
    T::NAME
}

struct Job {
    name: String,
}

impl Named for Job {
    const NAME: &'static str = "lockmacro-ui-pass-name-self";
}

impl Job {
    #[exclusive(name = Self::NAME, wait)]
    fn associated() -> &'static str {
        Self::NAME
    }

    #[exclusive(name = self.name, wait)]
    fn method(&self) -> usize {
        self.name.len()
    }
}

#[exclusive(name = format!("lockmacro-ui-pass-async-{id}"), on_conflict = "skip")]
async fn tenant_async(id: u32) -> Option<u32> {
    Some(id)
}

fn main() {
    assert_eq!(from_const(), Some(JOB));
    let held = Lock::new(JOB).try_acquire().expect("free");
    assert_eq!(from_const(), None);
    drop(held);
    assert_eq!(from_static(), JOB_STATIC);
    assert_eq!(from_module(), config::JOB);

    // Per call: tenant 1 held, tenant 2 runs.
    let held = Lock::new("lockmacro-ui-pass-tenant-1")
        .try_acquire()
        .expect("free");
    assert_eq!(tenant(1), None);
    assert_eq!(tenant(2), Some(2));
    drop(held);
    assert_eq!(tenant(1), Some(1));

    assert_eq!(by_name("lockmacro-ui-pass-by-name"), 25);
    assert_eq!(by_string("lockmacro-ui-pass-by-string".to_owned()).len(), 27);
    assert_eq!(walk(7, 3), 3);
    assert_eq!(generic::<Backup>(), Backup::NAME);
    assert_eq!(Job::associated(), Job::NAME);
    let job = Job {
        name: "lockmacro-ui-pass-name-method".to_owned(),
    };
    assert_eq!(job.method(), 29);

    futures::executor::block_on(async {
        let held = Lock::new("lockmacro-ui-pass-async-1")
            .try_acquire()
            .expect("free");
        assert_eq!(tenant_async(1).await, None);
        assert_eq!(tenant_async(2).await, Some(2));
        drop(held);
        assert_eq!(tenant_async(1).await, Some(1));
    });
}
