package sqlstore

import (
	"context"
	"database/sql"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cpuMeter measures the CPU a benchmark case spends per operation, in
// this process (the clients, the HTTP server, the engine, the driver) and
// in the PostgreSQL backends serving the test's pool, read from
// /proc/<pid>/stat: PostgreSQL must run on this machine, as in the tests.
// Unlike ops/s, CPU per operation hardly moves when something else loads
// the machine, so it compares two cases measured minutes apart.
type cpuMeter struct {
	db      *sql.DB
	self    time.Duration
	backend map[int]time.Duration
}

// tick is the kernel's USER_HZ: /proc stat times are in 1/100 s.
const tick = 10 * time.Millisecond

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// backends reads the CPU of every backend of the test's database user.
func backends(db *sql.DB) map[int]time.Duration {
	out := map[int]time.Duration{}
	rows, err := db.QueryContext(context.Background(), "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND usename = current_user")
	if err != nil {
		return out
	}
	defer rows.Close()
	for rows.Next() {
		var pid int
		if rows.Scan(&pid) != nil {
			continue
		}
		raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			continue
		}
		// The fields after the command (which may hold spaces) start
		// after its closing parenthesis; utime and stime are the 14th
		// and 15th fields of the line.
		f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+1:]))
		if len(f) < 13 {
			continue
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		out[pid] = time.Duration(ut+st) * tick
	}
	return out
}

func startCPU(db *sql.DB) *cpuMeter {
	return &cpuMeter{db: db, self: selfCPU(), backend: backends(db)}
}

// report adds go-us/op, pg-us/op and cpu-us/op (their sum) for n
// operations; nothing when the backends' CPU cannot be read.
func (m *cpuMeter) report(b *testing.B, n int) {
	self := selfCPU() - m.self
	var pg time.Duration
	now := backends(m.db)
	if len(now) == 0 || n == 0 {
		return
	}
	for pid, t := range now {
		pg += t - m.backend[pid]
	}
	per := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(n) }
	b.ReportMetric(per(self), "go-us/op")
	b.ReportMetric(per(pg), "pg-us/op")
	b.ReportMetric(per(self+pg), "cpu-us/op")
}
