package etcd

// ServedFromMemory counts the Workers calls c answered from its mirror.
func ServedFromMemory(c *Coordinator) int64 { return c.workers.served.Load() }
