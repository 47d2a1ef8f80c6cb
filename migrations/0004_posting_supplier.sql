-- The X3 supplier an invoice was last sent under: should the vendor link change between
-- attempts, the look-up before any re-post still searches where the first attempt went.
ALTER TABLE invoices ADD COLUMN posting_supplier_code text;
