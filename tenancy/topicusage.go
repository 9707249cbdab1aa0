package tenancy

import (
	"context"
	"fmt"
)

// InstanceTopicIDs names the provisioned topics of each of the instances
// (instance ID → set of topic IDs; an instance without topics is absent):
// what a node's usage report may carry storage for.
func (s *Service) InstanceTopicIDs(ctx context.Context, instanceIDs []string) (map[string]map[string]bool, error) {
	rows, err := s.db.Query(ctx, `SELECT instance_id, id FROM topics WHERE instance_id = ANY($1)`, instanceIDs)
	if err != nil {
		return nil, fmt.Errorf("instance topics: %w", err)
	}
	defer rows.Close()
	out := map[string]map[string]bool{}
	for rows.Next() {
		var inst, id string
		if err := rows.Scan(&inst, &id); err != nil {
			return nil, fmt.Errorf("instance topics: %w", err)
		}
		if out[inst] == nil {
			out[inst] = map[string]bool{}
		}
		out[inst][id] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("instance topics: %w", err)
	}
	return out, nil
}
