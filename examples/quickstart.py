"""A tour of the documented job API on the embedded default store (a SQLite file, no server)."""

from taskjobs.api.job import (
    createJob,
    findJob,
    getJob,
    getJobResults,
    getJobs,
    getPendingJobs,
    setJobRunning,
    updateJobResult,
)

job = createJob("resize-image", "alice", {"path": "cat.png", "width": 640}, None)
print(f"created  {job['id']}  status={job['status']}  request={job['request']}")
print(f"pending jobs: {len(getPendingJobs(user='alice'))}")

setJobRunning(job["id"], {"messages": "started resizing"})
record, state = findJob(job["id"])
print(f"found    {record.id}  status={state}  started_at={record.started_at:%H:%M:%S}")

updateJobResult(job["id"], {"path": "cat-640.png"})
done = getJobResults(job["id"])
print(
    f"finished {done['id']}  result={done['result']}  "
    f"still pending? {getJob(job['id']) is not None}"
)
print(f"all jobs in the store: {len(getJobs())}")
