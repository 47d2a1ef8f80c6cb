-- Several analytical dimensions per line, and routing of invoices to X3 companies and sites.

-- Stampli value -> X3 dimension value, per X3 dimension type (PRJ, DEP ...). The cost center
-- column keeps cost_center_map, which may also change the type.
CREATE TABLE dimension_map (
    dimension_type  text NOT NULL,
    stampli_code    text NOT NULL,
    dimension_value text NOT NULL,
    PRIMARY KEY (dimension_type, stampli_code)
);

-- Stampli location / entity -> X3 company (CPY) and site (FCY).
CREATE TABLE entity_routes (
    location  text PRIMARY KEY,   -- trimmed, case-folded
    company   text NOT NULL,
    site      text NOT NULL
);
