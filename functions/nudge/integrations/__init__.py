"""What other systems send nudge, mapped to its canonical events: Shopify and WooCommerce webhooks, and the
Segment-style API (track, identify, alias). Pure mappers over `canonical`'s vocabulary; the services carry
out what they mean."""
