package cleanroom

import "github.com/cleanroom-go/cleanroom/internal/lease"

// spawnReaper starts the suite's reaper (see internal/lease).
func (e *Environment) spawnReaper() error {
	pid, err := lease.SpawnReaper(lease.ReaperArgs{
		Dir: e.share.files.Dir, Pod: e.podName, Suite: e.suite,
		URI: e.endpoint.URI, Identity: e.endpoint.Identity,
		Grace: e.cfg.GracePeriod, KeepWarm: e.cfg.KeepWarm,
	})
	if err != nil {
		return err
	}
	e.log.Debug("cleanroom: started the suite's reaper", "pid", pid, "log", e.share.files.ReaperLog())
	return nil
}
