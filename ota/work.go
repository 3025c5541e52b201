package ota

// work is one transaction's worth of rule applications. It carries the
// transaction and the clock, and keeps what is cheaper done once per batch
// of device messages than once per message: settling the rounds whose jobs
// changed, and writing back the tasks whose counts changed.
type work struct {
	tx     Tx
	env    Env
	rounds map[string]bool    // rounds to settle
	tasks  map[string]*Task   // tasks read in this transaction, by ID
	dirty  map[string]bool    // tasks to write back
	joins  map[string][]*Task // running incremental tasks by product (loadRunning)
	// planning is PlanningTasks by product (loadRunning).
	planning map[string][]string
	// budget bounds the jobs a reconcile step pushes (0: none); launched
	// counts them.
	budget, launched int
	// images are firmware read for upgrade commands, by ID. Only the image's
	// fields (version, digest, size, URL) are used from them, and those
	// never change once registered; a rollout dispatching 100,000 jobs in
	// one transaction decoded the same firmware 100,000 times without it.
	images map[string]*Firmware
}

func newWork(tx Tx, env Env) *work {
	return &work{tx: tx, env: env, rounds: map[string]bool{}, tasks: map[string]*Task{},
		dirty: map[string]bool{}, images: map[string]*Firmware{}}
}

// firmware reads a firmware once per transaction, for its image.
func (w *work) firmware(id string) (*Firmware, error) {
	if f, ok := w.images[id]; ok {
		return f, nil
	}
	f, err := w.tx.Firmware(id)
	if err != nil {
		return nil, err
	}
	w.images[id] = f
	return f, nil
}

// task reads a task once per transaction; changes to it are written back by
// finish when marked with touch.
func (w *work) task(id string) (*Task, error) {
	if t, ok := w.tasks[id]; ok {
		return t, nil
	}
	t, err := w.tx.Task(id)
	if err != nil {
		return nil, err
	}
	if t == nil {
		return nil, Errorf(KindInternal, "task %s does not exist", id)
	}
	w.tasks[id] = t
	return t, nil
}

func (w *work) touch(t *Task) {
	t.UpdatedAt = w.env.now()
	w.tasks[t.ID] = t
	w.dirty[t.ID] = true
}

// finish settles the rounds and writes back the tasks this work changed.
func (w *work) finish() error {
	for id := range w.rounds {
		if err := settleRound(w.tx, id, w.env); err != nil {
			return err
		}
	}
	for id := range w.dirty {
		if err := w.tx.PutTask(w.tasks[id]); err != nil {
			return err
		}
	}
	clear(w.rounds)
	clear(w.dirty)
	return nil
}

// setFirst returns the first n members of set in order, every member when n
// is negative. Members are read before the caller writes, since the store
// refuses writes while SetEach runs.
func setFirst(tx Tx, set string, n int) ([]string, error) {
	var members []string
	if n == 0 {
		return nil, nil
	}
	err := tx.SetEach(set, "", func(m string) error {
		members = append(members, m)
		if len(members) == n {
			return errStop
		}
		return nil
	})
	if err == errStop {
		err = nil
	}
	return members, err
}
