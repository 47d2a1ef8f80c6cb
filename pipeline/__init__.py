"""ml-connector domain: Stampli export in, Sage X3 supplier invoices out. No Celery imports here."""
