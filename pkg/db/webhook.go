package db

import (
	"context"

	"gorm.io/gorm"
)

// CreateWebhook inserts a webhook.
func (d *DB) CreateWebhook(ctx context.Context, w *Webhook) error {
	if w.ID == "" {
		w.ID = NewID()
	}
	return d.changing(ctx, "webhooks", actionCreate, func() string { return w.ID }, func(tx *gorm.DB) error {
		return translate(tx.Create(w).Error, "Webhook", w.ID)
	})
}

// Webhook returns a webhook in scope.
func (d *DB) Webhook(ctx context.Context, s Scope, id string) (*Webhook, error) {
	var w Webhook
	if err := s.apply(d.gorm.WithContext(ctx)).Where("id = ?", id).Take(&w).Error; err != nil {
		return nil, translate(err, "Webhook", id)
	}
	return &w, nil
}

// Webhooks lists webhooks in scope.
func (d *DB) Webhooks(ctx context.Context, s Scope, o ListOptions) ([]Webhook, error) {
	return List[Webhook](ctx, d, s, o)
}

// UpdateWebhook sets columns of a webhook.
func (d *DB) UpdateWebhook(ctx context.Context, id string, values map[string]any) error {
	return d.update(ctx, &Webhook{}, "webhooks", "Webhook", id, values)
}

// DeleteWebhook removes a webhook.
func (d *DB) DeleteWebhook(ctx context.Context, id string) error {
	return d.deleteByID(ctx, &Webhook{}, "webhooks", "Webhook", id)
}
