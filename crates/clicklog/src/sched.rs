//! How the server's threads ask Linux to schedule them: request threads ask
//! for a short time slice, the click writer's threads (and a simulation run
//! from the admin API) for classes and nice values that never (or rarely)
//! preempt request work. Elsewhere, and where
//! a request is refused, the kernel's defaults apply.

/// Scheduling classes the click writer's threads put themselves in.
#[derive(Clone, Copy, Debug)]
pub(crate) enum SchedClass {
    /// Its wake-ups do not preempt a running thread.
    Batch,
    /// Runs only when a core would otherwise be idle; never preempts
    /// request work.
    Idle,
}

/// Puts the calling thread in `class`; false where that is refused (or
/// not Linux).
pub(crate) fn set_class(class: SchedClass) -> bool {
    #[cfg(target_os = "linux")]
    {
        let policy = match class {
            SchedClass::Batch => libc::SCHED_BATCH,
            SchedClass::Idle => libc::SCHED_IDLE,
        };
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: a plain syscall on the calling thread; `param` outlives it.
        unsafe { libc::sched_setscheduler(0, policy, &param) == 0 }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = class;
        false
    }
}

/// Puts the calling thread where background work belongs: the idle class,
/// else the lowest nice value. For loaders outside this crate (the
/// columnar analytics store's).
pub fn background_thread() {
    if !set_class(SchedClass::Idle) {
        set_nice(19);
    }
}

/// Puts the calling thread where long CPU-bound work on demand belongs (a
/// simulation run from the admin API): the batch class at nice 10, so it
/// yields to request threads yet still progresses on a busy machine (the
/// idle class could starve it past its time limit). Threads it starts
/// inherit both.
pub fn batch_thread() {
    set_class(SchedClass::Batch);
    set_nice(10);
}

/// Sets the calling thread's nice value (raising it needs no privilege).
pub(crate) fn set_nice(nice: i32) {
    #[cfg(target_os = "linux")]
    // SAFETY: plain syscalls on the calling thread, no memory involved.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        if libc::setpriority(libc::PRIO_PROCESS, tid, nice) != 0 {
            tracing::warn!(nice, "could not set a background thread's priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

/// Asks for a time slice of `micros` for the calling thread, in the normal
/// class (`server.request_slice_us`). Linux's EEVDF scheduler (6.12 and
/// later) gives a thread with a shorter slice an earlier deadline: when a
/// request thread wakes while the load shares its core, it runs sooner, in
/// shorter turns. The kernel keeps the slice within 0.1–100 ms; earlier
/// kernels accept the call and ignore the slice. False where refused.
pub fn request_slice(micros: u32) -> bool {
    #[cfg(target_os = "linux")]
    {
        /// `struct sched_attr`, as far as `SCHED_ATTR_SIZE_VER0`.
        #[repr(C)]
        struct SchedAttr {
            size: u32,
            policy: u32,
            flags: u64,
            nice: i32,
            priority: u32,
            runtime: u64,
            deadline: u64,
            period: u64,
        }
        // SAFETY: `getpriority` on the calling thread reads no memory.
        let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        let attr = SchedAttr {
            size: std::mem::size_of::<SchedAttr>() as u32,
            policy: libc::SCHED_OTHER as u32,
            flags: 0,
            nice,
            priority: 0,
            runtime: u64::from(micros) * 1000,
            deadline: 0,
            period: 0,
        };
        // SAFETY: the syscall reads `attr` (which outlives it) for the
        // calling thread (pid 0) and writes nothing.
        unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) == 0 }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = micros;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `se.slice` of the calling thread, where the kernel shows it.
    #[cfg(target_os = "linux")]
    fn own_slice_ns() -> Option<u64> {
        // SAFETY: `gettid` has no arguments.
        let tid = unsafe { libc::syscall(libc::SYS_gettid) };
        let sched = std::fs::read_to_string(format!("/proc/self/task/{tid}/sched")).ok()?;
        let line = sched.lines().find(|l| l.trim_start().starts_with("se.slice"))?;
        line.split(':').nth(1)?.trim().parse().ok()
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_request_thread_gets_the_slice_it_asks_for_and_keeps_its_nice_value() {
        std::thread::spawn(|| {
            // SAFETY: plain syscalls on the calling thread.
            unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 3) };
            assert!(request_slice(300), "sched_setattr refused: {}", std::io::Error::last_os_error());
            if let Some(slice) = own_slice_ns() {
                assert_eq!(slice, 300_000);
            }
            // SAFETY: as above.
            assert_eq!(unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }, 3);
        })
        .join()
        .unwrap();
    }
}
